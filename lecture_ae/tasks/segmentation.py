r"""Segmentation of cell images: the classical baseline, training the U-Net variants, the score table.

* :func:`otsu_masks`: the classical baseline, one global threshold per image chosen by
  Otsu's method (:func:`skimage.filters.threshold_otsu`), which maximises the
  between-class variance of the grey levels; cells are the *dark* side in phase
  contrast.  A light Gaussian smoothing first and hole filling after are standard practice.
* :func:`train_unets`: the U-Net and its ablations (:data:`lecture_ae.models.unet.UNET_VARIANTS`)
  trained by :func:`lecture_ae.train.fit` with the same data, seed and budget.
* :func:`score_table`: IoU and Dice (:func:`lecture_ae.metrics.iou`, :func:`lecture_ae.metrics.dice`)
  of every method on the same test images, pooled over pixels and averaged per image.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from .._checks import as_tensor, check_int, check_scalar
from ..metrics import dice, iou
from ..models.unet import UNET_VARIANTS, UNet, predict_masks
from ..train import fit

__all__ = ["otsu_masks", "train_unets", "score_table", "VARIANT_NAMES"]

VARIANT_NAMES = {"unet": "U-Net", "no_skip": "no shortcuts (encoder-decoder)", "skip_only": "shortcuts only (no bottleneck)",
                 "otsu": "Otsu threshold"}


def otsu_masks(X, *, sigma: float = 1.0, dark: bool = True, fill_holes: bool = True) -> torch.Tensor:
    """Otsu's threshold image by image: masks (N, 1, H, W) as float 0/1 for images ``X`` (N, 1, H, W).

    ``sigma``: Gaussian smoothing before thresholding (0: none); ``dark``: the objects
    are darker than the threshold; ``fill_holes``: fill holes inside the objects.
    """
    from skimage.filters import gaussian, threshold_otsu

    X = as_tensor(X, "X", ndim=4, shape="(N, 1, H, W)")
    if X.shape[1] != 1:
        raise ValueError(f"X must have shape (N, 1, H, W) (grey images); got {tuple(X.shape)}")
    sigma = check_scalar(sigma, "sigma")
    out = np.zeros(tuple(X.shape), dtype=np.float32)
    for i, img in enumerate(X[:, 0].detach().cpu().double().numpy()):
        if sigma > 0:
            img = gaussian(img, sigma=sigma, preserve_range=True)
        if img.max() == img.min():
            continue
        t = threshold_otsu(img)
        m = img < t if dark else img > t
        out[i, 0] = ndi.binary_fill_holes(m) if fill_holes else m
    return torch.from_numpy(out).to(X.device)


def train_unets(train_data, val_data=None, variants=UNET_VARIANTS, *, depth: int = 3, width: int = 8,
                epochs: int = 10, batch_size: int = 16, lr: float = 5e-3, seed: int = 0, device=None,
                num_threads: int | None = None, show_progress=None) -> dict:
    """Train one :class:`~lecture_ae.models.unet.UNet` per variant on the same data with the same budget.

    Every model starts from weights drawn with ``seed`` and is trained by
    :func:`lecture_ae.train.fit` (Adam, ``epochs``, ``batch_size``, ``lr``, shuffling
    from ``seed``; the best validation epoch is kept when ``val_data`` is given).
    ``num_threads`` sets torch's CPU threads while training (restored afterwards): these
    small convolutions gain little from several threads, and on a busy machine one
    thread is several times faster than two that wait for each other.
    Returns ``{variant: (model, history)}``.
    """
    for variant in variants:
        if variant not in UNET_VARIANTS:
            raise ValueError(f"variants must be taken from {UNET_VARIANTS}; got {variant!r}")
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(check_int(num_threads, "num_threads"))
    out = {}
    try:
        for variant in variants:
            model = UNet(depth=depth, width=width, variant=variant, seed=seed)
            hist = fit(model, train_data, val_data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       device=device, show_progress=show_progress)
            out[variant] = (model, hist)
    finally:
        torch.set_num_threads(before)
    return out


def score_table(masks: dict, Y):
    """A :class:`pandas.DataFrame` with one row per method: IoU and Dice against the masks ``Y``.

    ``masks`` maps a method name (a variant or ``"otsu"``; shown with :data:`VARIANT_NAMES`)
    to predicted masks (N, 1, H, W).  Columns: pooled IoU / Dice over all test pixels and
    the mean and worst per-image IoU; rows sorted by pooled IoU, best first.
    """
    import pandas as pd

    Y = as_tensor(Y, "Y", ndim=4, shape="(N, 1, H, W)")
    if not isinstance(masks, dict) or not masks:
        raise ValueError("masks must be a non-empty dict {method: masks (N, 1, H, W)}")
    rows = []
    for name, P in masks.items():
        per = iou(P, Y, per_image=True)
        rows.append({"method": VARIANT_NAMES.get(name, name), "IoU": iou(P, Y), "Dice": dice(P, Y),
                     "mean IoU per image": float(per.mean()), "worst image IoU": float(per.min())})
    return pd.DataFrame(rows).sort_values("IoU", ascending=False).set_index("method").round(3)


def predict_all(models: dict, X) -> dict:
    """``{variant: predict_masks(model, X)}`` for the ``{variant: (model, history)}`` of :func:`train_unets`."""
    X = as_tensor(X, "X", ndim=4, shape="(N, 1, H, W)")
    return {name: predict_masks(model, X) for name, (model, _) in models.items()}


__all__ += ["predict_all"]
