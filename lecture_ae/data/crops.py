"""High-passed crops of the bundled photographs: the training images of convolutional sparse coding."""
from __future__ import annotations

import numpy as np
import torch

from .._checks import as_tensor, check_int, check_scalar

__all__ = ["highpass", "image_crops"]

def highpass(image, sigma=2.0) -> np.ndarray:
    """Image minus its Gaussian blur (std ``sigma`` pixels), scaled to unit RMS.

    Sparse coding models the edges and textures; the slowly varying grey level is
    removed first (SPORCO's examples do the same with a Tikhonov low-pass filter).
    """
    from scipy.ndimage import gaussian_filter

    img = np.asarray(as_tensor(image, "image", ndim=2, shape="(H, Wd)").double().cpu().numpy())
    sigma = check_scalar(sigma, "sigma", low=0.0, low_inclusive=False)
    hp = img - gaussian_filter(img, sigma, mode="reflect")
    return hp / max(float(np.sqrt((hp**2).mean())), 1e-12)


def image_crops(names=("camera", "brick", "coins"), *, size=64, per_image=4, sigma=2.0, seed=0, dtype=torch.float32):
    """``per_image`` random ``size`` x ``size`` crops of each high-passed bundled photograph, (N, size, size)."""
    from .images import load_image

    if isinstance(names, str):
        names = (names,)
    size = check_int(size, "size", low=2)
    per_image = check_int(per_image, "per_image")
    rng = np.random.default_rng(seed)
    crops = []
    for name in names:
        img = highpass(load_image(name), sigma)
        H, Wd = img.shape
        if size > min(H, Wd):
            raise ValueError(f"size must be <= the image size {(H, Wd)}; got {size}")
        for _ in range(per_image):
            r, c = rng.integers(0, H - size + 1), rng.integers(0, Wd - size + 1)
            crops.append(img[r : r + size, c : c + size])
    return torch.as_tensor(np.stack(crops), dtype=dtype)


