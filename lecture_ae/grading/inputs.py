"""Random inputs for the checks: every draw from the generator a :class:`~lecture_ae.grading.checks.Check`
hands its ``cases`` function, in float64 unless said otherwise."""
from __future__ import annotations

import torch

F64 = torch.float64

__all__ = ["F64", "gen", "randn", "rand", "unit_columns", "sparse_codes", "relu_codes", "mask"]


def gen(seed: int) -> torch.Generator:
    """A generator seeded with ``seed`` (for the fixed edge cases)."""
    return torch.Generator().manual_seed(int(seed))


def randn(g, *shape, scale=1.0):
    return scale * torch.randn(*shape, generator=g, dtype=F64)


def rand(g, *shape, low=0.0, high=1.0, dtype=F64):
    return low + (high - low) * torch.rand(*shape, generator=g, dtype=dtype)


def unit_columns(g, d, h, scale=1.0):
    """A (d, h) dictionary with columns of norm ``scale``."""
    W = randn(g, d, h)
    return scale * W / torch.linalg.vector_norm(W, dim=0, keepdim=True)


def sparse_codes(g, N, h, density=0.3, scale=1.5):
    """(N, h) codes with about ``density`` of the entries non-zero (signed)."""
    S = randn(g, N, h, scale=scale)
    keep = torch.rand(N, h, generator=g) < density
    return torch.where(keep, S, torch.zeros_like(S))


def relu_codes(g, N, h, density=0.4, scale=1.0):
    """Non-negative sparse codes, as a ReLU encoder makes them."""
    S = randn(g, N, h, scale=scale).abs()
    return torch.where(torch.rand(N, h, generator=g) < density, S, torch.zeros_like(S))


def mask(g, shape, density):
    """A 0/1 float64 mask with about ``density`` ones."""
    return (torch.rand(*shape, generator=g) < density).to(F64)
