"""Real photographs that ship inside scikit-image, and patches of them.

These images are part of scikit-image's wheel (no download); pooch-fetched ones are
not offered here.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.feature_extraction.image import extract_patches_2d

from .._checks import check_int

__all__ = ["SKIMAGE_IMAGES", "load_image", "image_patches"]

#: Grey-level images bundled in the scikit-image wheel (load offline).
SKIMAGE_IMAGES = ("camera", "coins", "brick", "grass", "gravel", "moon", "text", "page", "cell")


def load_image(name: str = "camera") -> np.ndarray:
    """A bundled scikit-image photograph as a float64 array in [0, 1] (grey level)."""
    if name not in SKIMAGE_IMAGES:
        raise ValueError(f"name must be one of {SKIMAGE_IMAGES}; got {name!r}")
    from skimage import data, util

    img = getattr(data, name)()
    if img.ndim == 3:
        from skimage.color import rgb2gray

        img = rgb2gray(img)
    return util.img_as_float64(img)


def image_patches(
    name: str = "camera", *, patch_size: int = 8, n: int = 10000, seed: int = 0, remove_mean: bool = True,
    dtype=torch.float32,
) -> torch.Tensor:
    """``n`` random ``patch_size`` x ``patch_size`` patches of a bundled photograph as rows (n, p*p).

    With ``remove_mean`` each patch has its mean grey level subtracted (the DC
    component carries no structure worth a dictionary atom).  The set is then scaled
    so that the mean patch norm is 1, which keeps sensible values of lambda
    independent of the image and the patch size.
    """
    patch_size = check_int(patch_size, "patch_size", low=2)
    n = check_int(n, "n")
    img = load_image(name)
    P = extract_patches_2d(img, (patch_size, patch_size), max_patches=n, random_state=seed).reshape(n, -1)
    if remove_mean:
        P = P - P.mean(axis=1, keepdims=True)
    P = P / max(np.linalg.norm(P, axis=1).mean(), 1e-12)
    return torch.as_tensor(P, dtype=dtype)
