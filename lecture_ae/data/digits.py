"""Scikit-learn's handwritten digits (8 x 8, 1797 images): the embedded default image data.

The images ship inside scikit-learn's wheel, so nothing downloads.  Grey levels
0..16 are scaled to [0, 1]; every image is one row of ``X`` (N, 64).  The
train / validation / test split is stratified by class and fixed by ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_scalar

__all__ = ["ImageSplits", "load_digits_splits", "split_arrays"]


@dataclass(frozen=True)
class ImageSplits:
    """Images as rows plus labels, split into train / validation / test.

    ``X_*`` are float tensors (N, H*W) with values in [0, 1]; ``y_*`` int64 class
    labels (N,); ``image_shape`` is (H, W).  :meth:`images` reshapes rows to
    (N, 1, H, W) for convolutional models.
    """

    X_train: torch.Tensor
    X_val: torch.Tensor
    X_test: torch.Tensor
    y_train: torch.Tensor
    y_val: torch.Tensor
    y_test: torch.Tensor
    image_shape: tuple[int, int]
    name: str

    @property
    def d(self) -> int:
        """Pixels per image, H * W."""
        return self.image_shape[0] * self.image_shape[1]

    def images(self, X: torch.Tensor) -> torch.Tensor:
        """Rows (N, H*W) as single-channel images (N, 1, H, W)."""
        return X.reshape(X.shape[0], 1, *self.image_shape)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.X_train), "val": len(self.X_val), "test": len(self.X_test)}

    def __repr__(self) -> str:
        s = self.sizes()
        return f"ImageSplits({self.name!r}, image_shape={self.image_shape}, train={s['train']}, val={s['val']}, test={s['test']})"


def split_arrays(n: int, y=None, *, val_fraction=0.15, test_fraction=0.15, seed=0):
    """Index arrays (train, val, test) of a random split of ``n`` samples, stratified by ``y`` when given."""
    from sklearn.model_selection import train_test_split

    n = check_int(n, "n", low=3)
    val_fraction = check_scalar(val_fraction, "val_fraction", low=0.0, low_inclusive=False, high=0.9)
    test_fraction = check_scalar(test_fraction, "test_fraction", low=0.0, high=0.9)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1; got {val_fraction} + {test_fraction}")
    seed = check_int(seed, "seed", low=0)
    idx = np.arange(n)
    strat = None if y is None else np.asarray(y)
    if test_fraction > 0:
        rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    else:
        rest, test = idx, idx[:0]
    strat_rest = None if strat is None else strat[rest]
    train, val = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction), random_state=seed, stratify=strat_rest)
    return np.sort(train), np.sort(val), np.sort(test)


def load_digits_splits(*, val_fraction=0.15, test_fraction=0.15, seed=0, dtype=torch.float32) -> ImageSplits:
    """The 1797 handwritten digits of :func:`sklearn.datasets.load_digits`, scaled to [0, 1], split by ``seed``.

    Stratified by class: each split holds about the same share of every digit.
    With the defaults: 1257 train, 270 validation, 270 test images of 8 x 8 pixels.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    tr, va, te = split_arrays(len(X), y, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)

    def t(a):
        return torch.as_tensor(a, dtype=dtype)

    return ImageSplits(
        X_train=t(X[tr]), X_val=t(X[va]), X_test=t(X[te]),
        y_train=torch.as_tensor(y[tr]), y_val=torch.as_tensor(y[va]), y_test=torch.as_tensor(y[te]),
        image_shape=(8, 8), name="digits",
    )
