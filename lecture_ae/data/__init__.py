"""Datasets: generated from a seed or shipped inside a dependency, so nothing downloads."""
from .images import image_patches, load_image, SKIMAGE_IMAGES
from .toy import TOY_LAMBDAS, toy_2d
from .digits import ImageSplits, load_digits_splits, split_arrays
from .manifold import curve, curve_tangent, noisy_curve
from .mnist import MNIST_ENV, chapter_digits, load_mnist, load_mnist_splits, read_idx, write_idx

__all__ = ["toy_2d", "TOY_LAMBDAS", "image_patches", "load_image", "SKIMAGE_IMAGES"]
__all__ += ["ImageSplits", "load_digits_splits", "split_arrays", "MNIST_ENV", "chapter_digits", "load_mnist",
            "load_mnist_splits", "read_idx", "write_idx", "curve", "curve_tangent", "noisy_curve"]
from .mvtec import (DEFECT_TYPES, MVTEC_ENV, TEXTURES, MVTecSplits, TextureSet, add_defect, load_mvtec,
                    make_texture_set, mvtec_categories, texture_dataset, write_mvtec)

__all__ += ["DEFECT_TYPES", "MVTEC_ENV", "TEXTURES", "MVTecSplits", "TextureSet", "add_defect", "load_mvtec",
            "make_texture_set", "mvtec_categories", "texture_dataset", "write_mvtec"]
from .cells import CellSplits, cell_splits, load_isbi_cells, make_cells  # noqa: E402  (issue 5)

__all__ += ["CellSplits", "cell_splits", "load_isbi_cells", "make_cells"]
