"""The lecture's 2-D toy problem: points x in R^2 made of 3 sources."""
from __future__ import annotations

import math

import torch

from .._checks import check_int, check_scalar
from ..runtime import make_generator

__all__ = ["toy_2d", "TOY_LAMBDAS"]

#: The lambda sweep of the lecture's five-panel figure.
TOY_LAMBDAS = (0.2, 0.6, 2.0, 6.0, 20.0)


def toy_2d(n=300, *, scale=3.0, noise=0.15, p_two=0.25, seed=0, dtype=torch.float64):
    r"""Points :math:`x = W s + \varepsilon` in :math:`\mathbb R^2` with h = 3 sources.

    The three true atoms are unit vectors at 90, 210 and 330 degrees.  Each point
    uses one source (probability ``1 - p_two``) or two, with Gaussian coefficients
    of standard deviation ``scale``; Gaussian noise of standard deviation ``noise``
    is added.  The data thus lie near three lines through the origin, the picture
    sparse coding is made for: with 3 atoms in 2-D any point has infinitely many
    dense codes, and the L1 term picks the sparse one.

    Returns ``(X, W_true, S_true)`` with shapes (n, 2), (2, 3), (n, 3).
    """
    n = check_int(n, "n")
    scale = check_scalar(scale, "scale", low=0.0, low_inclusive=False)
    noise = check_scalar(noise, "noise")
    p_two = check_scalar(p_two, "p_two", high=1.0)
    gen = make_generator(seed)
    angles = torch.tensor([90.0, 210.0, 330.0], dtype=dtype) * math.pi / 180
    W = torch.stack([torch.cos(angles), torch.sin(angles)])  # (2, 3)
    S = torch.zeros(n, 3, dtype=dtype)
    first = torch.randint(3, (n,), generator=gen)
    second = (first + torch.randint(1, 3, (n,), generator=gen)) % 3
    two = torch.rand(n, generator=gen, dtype=torch.float64) < p_two
    rows = torch.arange(n)
    S[rows, first] = scale * torch.randn(n, generator=gen, dtype=dtype)
    S[rows[two], second[two]] = scale * torch.randn(n, generator=gen, dtype=dtype)[two]
    X = S @ W.T + noise * torch.randn(n, 2, generator=gen, dtype=dtype)
    return X, W, S
