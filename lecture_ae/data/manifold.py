r"""Points near a curve in the plane: the picture of the denoising autoencoder's manifold.

The curve is the S-shaped arc :math:`c(t) = (t,\ 0.6 \sin(1.5 \pi t))`,
:math:`t \in [-1, 1]`, a one-dimensional manifold in :math:`\mathbb R^2`; the samples lie
on it up to a small Gaussian scatter.
"""
from __future__ import annotations

import math

import torch

from .._checks import check_int, check_scalar
from ..runtime import make_generator

__all__ = ["curve", "curve_tangent", "noisy_curve"]


def curve(t) -> torch.Tensor:
    r"""Points :math:`c(t) = (t, 0.6\sin(1.5\pi t))` of the curve for parameters ``t`` (any shape); shape (..., 2)."""
    t = torch.as_tensor(t)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return torch.stack([t, 0.6 * torch.sin(1.5 * math.pi * t)], dim=-1)


def curve_tangent(t) -> torch.Tensor:
    r"""Unit tangent vectors :math:`c'(t) / \|c'(t)\|` of the curve, shape (..., 2)."""
    t = torch.as_tensor(t)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    d = torch.stack([torch.ones_like(t), 0.6 * 1.5 * math.pi * torch.cos(1.5 * math.pi * t)], dim=-1)
    return d / d.norm(dim=-1, keepdim=True)


def noisy_curve(n: int = 500, *, noise: float = 0.02, seed=0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points near the curve: ``c(t) + noise * N(0, I)`` with ``t ~ U[-1, 1]``; returns ``(X (n, 2), t (n,))``."""
    n = check_int(n, "n")
    noise = check_scalar(noise, "noise")
    gen = make_generator(seed)
    t = torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1
    X = curve(t) + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return X.to(dtype), t.to(dtype)
