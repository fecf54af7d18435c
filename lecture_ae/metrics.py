r"""Metrics shared by the chapters, tasks and benchmarks.

Images are compared sample by sample: ``X`` and ``X_hat`` are (N, ...) with one
image (or vector) per row along the first dimension.

* :func:`mse`: mean squared error over all entries;
* :func:`per_sample_mse`: :math:`\frac1d\|x_i - \hat x_i\|^2` for each sample, shape (N,);
* :func:`psnr`: peak signal-to-noise ratio :math:`10\log_{10}(R^2 / \mathrm{MSE}_i)` in dB,
  per sample (``data_range`` R, 1 for images in [0, 1]) and averaged over the samples,
  the convention of :func:`skimage.metrics.peak_signal_noise_ratio` applied image by image.

Other helpers append their metrics in a section at the end of this file.
"""
from __future__ import annotations

import torch

from ._checks import as_tensor, check_int, check_scalar

__all__ = ["mse", "per_sample_mse", "psnr", "code_bits"]


def _pair(X, X_hat):
    X = as_tensor(X, "X", shape="(N, ...)")
    X_hat = as_tensor(X_hat, "X_hat", shape="(N, ...)", device=X.device)
    if X.dim() == 0:
        raise ValueError("X must have shape (N, ...) with one sample per row; got a 0-d value")
    if X_hat.numel() != X.numel() or X_hat.shape[0] != X.shape[0]:
        raise ValueError(f"X_hat must have the shape of X, {tuple(X.shape)}; got {tuple(X_hat.shape)}")
    dtype = torch.promote_types(X.dtype, X_hat.dtype)
    return X.reshape(len(X), -1).to(dtype), X_hat.reshape(len(X), -1).to(dtype)


def per_sample_mse(X, X_hat) -> torch.Tensor:
    r"""Mean squared error of every sample, :math:`\frac1d\|x_i - \hat x_i\|_2^2`, shape (N,)."""
    X, X_hat = _pair(X, X_hat)
    return ((X - X_hat) ** 2).mean(dim=1)


def mse(X, X_hat) -> float:
    """Mean squared error over all entries of ``X`` and ``X_hat`` (same shape)."""
    return float(per_sample_mse(X, X_hat).mean())


def psnr(X, X_hat, data_range: float = 1.0, *, reduction: str = "mean"):
    r"""Peak signal-to-noise ratio in dB, :math:`10 \log_{10}(R^2 / \mathrm{MSE}_i)`, image by image.

    ``reduction="mean"`` returns the mean over the N samples (a float), ``"none"`` the
    (N,) tensor.  A perfect reconstruction has infinite PSNR.  Higher is better; +6 dB
    halves the root-mean-square error.
    """
    data_range = check_scalar(data_range, "data_range", low=0.0, low_inclusive=False)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")
    err = per_sample_mse(X, X_hat)
    values = 10.0 * torch.log10(data_range**2 / err)
    return float(values.mean()) if reduction == "mean" else values


def code_bits(h: int, value_bits: int = 32) -> int:
    """Size in bits of one code of ``h`` numbers stored with ``value_bits`` bits each (dense storage)."""
    return check_int(h, "h") * check_int(value_bits, "value_bits")
