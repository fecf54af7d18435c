"""Datasets: generated from a seed or shipped inside a dependency, so nothing downloads."""
from .images import image_patches, load_image, SKIMAGE_IMAGES
from .toy import TOY_LAMBDAS, toy_2d

__all__ = ["toy_2d", "TOY_LAMBDAS", "image_patches", "load_image", "SKIMAGE_IMAGES"]
