r"""Topological (topographic) sparse coding: the h sources sit on a 2-D grid.

The L1 penalty treats the sources as an unordered set.  Topographic sparse coding
(Kavukcuoglu et al. 2009, *topographic filter maps*; LeCun's invariant feature
hierarchies; the UFLDL topographic exercise) places the h sources on a
:math:`g_1 \times g_2` grid and penalises, for every grid cell c, the L2 norm of the
sources in its neighbourhood :math:`\mathcal N(c)` (a ``size`` x ``size`` window
that wraps around the grid borders, so the neighbourhoods overlap):

.. math::

    P(s) = \sum_c \sqrt{\epsilon + \sum_{j \in \mathcal N(c)} s_j^2}, \qquad
    E_{\mathrm{topo}}(W, S) = \frac1N \sum_i \|x_i - W s_i\|_2^2 + \lambda P(s_i).

A group norm switches whole neighbourhoods on together, and a source pays less when
its grid neighbours are active too; so atoms that are often used together drift
next to each other, and the learned dictionary varies smoothly over the grid.
With :math:`\epsilon > 0` the penalty is smooth (the UFLDL choice), with gradient

.. math::

    \frac{\partial P}{\partial s_j} = s_j \sum_{c:\, j \in \mathcal N(c)}
    \frac{1}{\sqrt{\epsilon + \sum_{l\in\mathcal N(c)} s_l^2}}

and a Lipschitz constant :math:`m/\sqrt\epsilon`, m = ``size**2`` (every source lies in
m neighbourhoods).  The codes are inferred by FISTA on the smoothed objective with
step :math:`1/L`, :math:`L = 2\|W\|_2^2 + \lambda m / \sqrt\epsilon`; the atoms
are updated with unit-norm block-coordinate descent (as in the online algorithm).

Sources are numbered row by row on the grid: source j sits at
``divmod(j, grid[1])``.
"""
from __future__ import annotations

import math
import time

import torch

from .._checks import as_tensor, check_int, check_scalar
from ..runtime import get_device, make_generator, progress
from .coding import _check_problem, _check_start, _lipschitz_from_gram
from .proximal import Smooth, accelerated_proximal_gradient, identity_prox
from .dictionary import DictionaryLearningResult, _unit_norm_step, init_dictionary

__all__ = [
    "neighbourhood_matrix",
    "topographic_penalty",
    "topographic_penalty_grad",
    "topographic_objective",
    "topographic_fista",
    "learn_topographic_dictionary",
    "neighbour_similarity",
    "grid_distances",
    "similarity_by_distance",
]


def _check_grid(grid, h=None):
    if isinstance(grid, int) and not isinstance(grid, bool):
        grid = (grid, grid)
    try:
        g1, g2 = (int(v) for v in grid)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"grid must be a pair (g1, g2) of positive integers; got {grid!r}") from exc
    if g1 < 1 or g2 < 1:
        raise ValueError(f"grid must be a pair (g1, g2) of positive integers; got {grid!r}")
    if h is not None and g1 * g2 != h:
        raise ValueError(f"grid {(g1, g2)} holds {g1 * g2} sources but there are h = {h}")
    return g1, g2


def neighbourhood_matrix(grid, size=3, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """The 0/1 matrix M (h, h): ``M[c, j] = 1`` when source j lies in the ``size`` x ``size``
    window centred on grid cell c (wrapping around the borders).  Rows are the groups."""
    g1, g2 = _check_grid(grid)
    size = check_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd (a window centred on a cell); got {size}")
    if size > min(g1, g2):
        raise ValueError(f"size must be <= the grid's sides {(g1, g2)}; got {size}")
    r = size // 2
    h = g1 * g2
    M = torch.zeros(h, h, dtype=dtype)
    for c in range(h):
        ci, cj = divmod(c, g2)
        for di in range(-r, r + 1):
            for dj in range(-r, r + 1):
                M[c, ((ci + di) % g1) * g2 + (cj + dj) % g2] = 1.0
    return M.to(get_device(device) if device is not None else "cpu")


def _codes(S, name="S"):
    S = as_tensor(S, name, shape="(N, h)")
    if S.dim() == 1:
        S = S[None]
    if S.dim() != 2:
        raise ValueError(f"{name} must have shape (N, h) or (h,); got {tuple(S.shape)}")
    return S


def _pen(S, M, eps):
    return torch.sqrt(eps + (S * S) @ M.T).sum(dim=1)


def _pen_grad(S, M, eps):
    pooled = eps + (S * S) @ M.T
    if eps > 0:
        inv = torch.rsqrt(pooled)
    else:  # an all-zero neighbourhood contributes 0 (a subgradient)
        inv = torch.where(pooled > 0, torch.rsqrt(pooled.clamp_min(1e-300)), torch.zeros_like(pooled))
    return S * (inv @ M)


def topographic_penalty(S, grid, *, size=3, eps=0.0) -> torch.Tensor:
    r"""Per-sample penalty :math:`P(s_i) = \sum_c \sqrt{\epsilon + \sum_{j\in\mathcal N(c)} s_{ij}^2}`, shape (N,)."""
    S = _codes(S)
    eps = check_scalar(eps, "eps")
    M = neighbourhood_matrix(_check_grid(grid, S.shape[1]), size, dtype=S.dtype, device=S.device)
    return _pen(S, M, eps)


def topographic_penalty_grad(S, grid, *, size=3, eps=1e-3) -> torch.Tensor:
    r"""Gradient of :math:`P` per sample, :math:`s_j \sum_{c \ni j} (\epsilon + \sum_{l\in\mathcal N(c)} s_l^2)^{-1/2}`, (N, h).

    Written by hand (no autograd).  With ``eps=0`` a neighbourhood whose sources are
    all zero contributes 0 (a subgradient).
    """
    S = _codes(S)
    eps = check_scalar(eps, "eps")
    M = neighbourhood_matrix(_check_grid(grid, S.shape[1]), size, dtype=S.dtype, device=S.device)
    return _pen_grad(S, M, eps)


def topographic_objective(X, W, S, lam, grid, *, size=3, eps=0.0) -> torch.Tensor:
    r""":math:`E_{\mathrm{topo}} = \frac1N\sum_i \|x_i - W s_i\|_2^2 + \lambda P(s_i)` (0-d tensor)."""
    X, W, S = _check_problem(X, W, S)
    lam = check_scalar(lam, "lam")
    eps = check_scalar(eps, "eps")
    M = neighbourhood_matrix(_check_grid(grid, W.shape[1]), size, dtype=X.dtype, device=X.device)
    return (((X - S @ W.T) ** 2).sum(dim=1) + lam * _pen(S, M, eps)).mean()


def _per_sample(X, W, S, lam, M, eps):
    return ((X - S @ W.T) ** 2).sum(dim=1) + lam * _pen(S, M, eps)


def topographic_fista(
    X, W, lam, grid, n_iter=100, *, size=3, eps=1e-3, S0=None, step=None, monotone=True, history=False, device=None
):
    r"""FISTA (gradient steps with momentum) on the smoothed :math:`E_{\mathrm{topo}}`, codes (N, h).

    Step :math:`1/L` with :math:`L = 2\|W\|_2^2 + \lambda\, m/\sqrt\epsilon` unless ``step`` is
    given.  ``monotone=True`` (default) keeps, per sample, the better of the new point and
    the previous iterate, so the objective never increases.  ``history=True`` also
    returns :math:`E_{\mathrm{topo}}` after every iteration.
    """
    X, W = _check_problem(X, W, device=get_device(device) if device is not None else None)
    lam = check_scalar(lam, "lam")
    eps = check_scalar(eps, "eps", low=0.0, low_inclusive=False)
    n_iter = check_int(n_iter, "n_iter", low=0)
    M = neighbourhood_matrix(_check_grid(grid, W.shape[1]), size, dtype=X.dtype, device=X.device)
    G = W.T @ W
    B = X @ W
    if step is None:
        L = _lipschitz_from_gram(G) + lam * float(M.sum(dim=0).max()) / math.sqrt(eps)
        t = 1.0 / L if L > 0 else 1.0
    else:
        t = check_scalar(step, "step", low=0.0, low_inclusive=False)
    S = _check_start(S0, X.shape[0], W.shape[1], X)
    def smooth(Xr, Br):  # reconstruction error + lam P_eps: the prox of the loop is the identity
        return Smooth(lambda Y: 2.0 * (Y @ G - Br) + lam * _pen_grad(Y, M, eps),
                      lambda Y: _per_sample(Xr, W, Y, lam, M, eps),
                      lambda Y, t_: Y - t_ * (2.0 * (Y @ G - Br) + lam * _pen_grad(Y, M, eps)))

    res = accelerated_proximal_gradient(smooth(X, B), identity_prox(), S, t, n_iter, monotone=monotone,
                                        history=history)
    S, hist = res.S, res.history
    return (S, hist) if history else S


def learn_topographic_dictionary(
    X, grid, lam, *, size=3, eps=1e-3, n_iter=20, encoder_iter=50, W0=None, seed=0, device=None, show_progress=None
) -> DictionaryLearningResult:
    r"""Learn a unit-norm dictionary (d, h = g1*g2) whose atoms are laid out on the grid.

    Alternates :func:`topographic_fista` on all codes (warm-started) and one pass of
    unit-norm block-coordinate descent on the atoms (:math:`\|w_j\| \le 1`); both
    half-steps never increase :math:`E_{\mathrm{topo}}` (smoothed with ``eps``), which is
    recorded after every outer iteration.
    """
    X = as_tensor(X, "X", ndim=2, shape="(N, d)", device=get_device(device) if device is not None else None)
    g1, g2 = _check_grid(grid)
    h = g1 * g2
    lam = check_scalar(lam, "lam")
    eps = check_scalar(eps, "eps", low=0.0, low_inclusive=False)
    n_iter = check_int(n_iter, "n_iter")
    encoder_iter = check_int(encoder_iter, "encoder_iter")
    if W0 is None:
        W = init_dictionary(X, h, seed=seed)
    else:
        W = as_tensor(W0, "W0", ndim=2, shape="(d, h)", device=X.device).to(X.dtype).clone()
        if W.shape != (X.shape[1], h):
            raise ValueError(f"W0 must have shape (d, h) = {(X.shape[1], h)}; got {tuple(W.shape)}")
        W = W / torch.linalg.vector_norm(W, dim=0).clamp_min(1.0)
    M = neighbourhood_matrix((g1, g2), size, dtype=X.dtype, device=X.device)
    S = torch.zeros(X.shape[0], h, dtype=X.dtype, device=X.device)
    res = DictionaryLearningResult(W=W, S=S)
    res.objective.append(float(_per_sample(X, W, S, lam, M, eps).mean()))
    res.seconds.append(0.0)
    res.samples_seen.append(0)
    elapsed = 0.0
    N = X.shape[0]
    bar = progress(range(n_iter), show=show_progress, desc="topographic dictionary learning", leave=False)
    for _ in bar:
        t0 = time.perf_counter()
        S = topographic_fista(X, W, lam, (g1, g2), encoder_iter, size=size, eps=eps, S0=S)
        W = _unit_norm_step(W, S.T @ S / N, X.T @ S / N)
        if X.device.type == "cuda":
            torch.cuda.synchronize(X.device)
        elapsed += time.perf_counter() - t0
        obj = float(_per_sample(X, W, S, lam, M, eps).mean())
        res.objective.append(obj)
        res.seconds.append(elapsed)
        res.samples_seen.append(res.samples_seen[-1] + N)
        bar.set_postfix(objective=f"{obj:.4g}")
    res.W, res.S = W, S
    return res


def neighbour_similarity(W, grid, *, size=3, n_random=None, seed=0) -> dict[str, float]:
    r"""Are grid neighbours more alike than other pairs?  Mean :math:`|\cos(w_j, w_l)|` over pairs.

    ``neighbours``: pairs j != l in one ``size`` x ``size`` window (wrap-around);
    ``others``: all remaining pairs (or ``n_random`` of them drawn with ``seed``);
    ``ratio`` = neighbours / others (> 1: the map is topographic).
    """
    W = as_tensor(W, "W", ndim=2, shape="(d, h)").double()
    g1, g2 = _check_grid(grid, W.shape[1])
    Wn = W / torch.linalg.vector_norm(W, dim=0).clamp_min(1e-30)
    C = (Wn.T @ Wn).abs()
    M = neighbourhood_matrix((g1, g2), size, dtype=torch.float64, device=W.device)
    near = M > 0  # row c: the window centred at c, so (c, j) are grid neighbours
    near = near | near.T
    off = ~torch.eye(W.shape[1], dtype=torch.bool, device=W.device)
    nb = near & off
    other = (~near) & off
    o = C[other]
    if n_random is not None:
        n_random = check_int(n_random, "n_random")
        gen = make_generator(seed)
        o = o[torch.randint(o.numel(), (n_random,), generator=gen).to(o.device)]
    n_mean, o_mean = float(C[nb].mean()), float(o.mean())
    return {"neighbours": n_mean, "others": o_mean, "ratio": n_mean / max(o_mean, 1e-30)}


def grid_distances(grid, *, device=None) -> torch.Tensor:
    r"""Distances (h, h) between the grid cells of the sources, on the torus of the neighbourhoods.

    The distance is the number of window steps, :math:`\max(|\Delta_1|, |\Delta_2|)` with
    each offset taken the short way round the grid (so the ``size`` x ``size`` windows of
    :func:`neighbourhood_matrix` hold exactly the sources at distance <= size // 2 from the centre).
    """
    g1, g2 = _check_grid(grid)
    j = torch.arange(g1 * g2)
    r, c = j // g2, j % g2  # source j sits at divmod(j, g2)
    dr = (r[:, None] - r[None, :]).abs()
    dc = (c[:, None] - c[None, :]).abs()
    dr = torch.minimum(dr, g1 - dr)
    dc = torch.minimum(dc, g2 - dc)
    D = torch.maximum(dr, dc)
    return D.to(get_device(device) if device is not None else "cpu")


def similarity_by_distance(W, grid) -> dict[str, list]:
    r"""Mean :math:`|\cos(w_j, w_l)|` over the pairs at each grid distance (see :func:`grid_distances`).

    Returns ``distance`` (1, 2, ...), ``similarity`` (the mean per distance) and ``pairs``
    (how many unordered pairs lie at that distance).  On a topographic map the similarity
    falls with the distance; for atoms placed on the grid at random it is flat up to chance.
    """
    W = as_tensor(W, "W", ndim=2, shape="(d, h)").double()
    g1, g2 = _check_grid(grid, W.shape[1])
    Wn = W / torch.linalg.vector_norm(W, dim=0).clamp_min(1e-30)
    C = (Wn.T @ Wn).abs().cpu()
    D = grid_distances((g1, g2))
    upper = torch.triu(torch.ones_like(D, dtype=torch.bool), diagonal=1)
    out = {"distance": [], "similarity": [], "pairs": []}
    for dist in range(1, int(D.max()) + 1):
        sel = upper & (D == dist)
        if bool(sel.any()):
            out["distance"].append(dist)
            out["similarity"].append(float(C[sel].mean()))
            out["pairs"].append(int(sel.sum()))
    return out
