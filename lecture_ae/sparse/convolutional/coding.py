r"""CSC coding: the objective :math:`E_{\mathrm{csc}}` and FISTA on the code maps (through the one proximal-gradient loop).

See :mod:`lecture_ae.sparse.convolutional` for the model, the boundaries and the adaptive step.
"""
from __future__ import annotations

import torch

from ..._checks import check_int, check_scalar
from ...runtime import get_device
from ..proximal import QuadraticResidual, Smooth, accelerated_proximal_gradient, soft_prox
from .operators import _check_boundary, _check_codes, _check_filters, _check_images, _operators, _synth, code_shape, csc_lipschitz

__all__ = ["csc_objective", "csc_fista"]

# ---------------------------------------------------------------------- objective
def _objective_terms(errors, S, lam):
    """Per-image E_csc from the per-image reconstruction errors ||x_i - sum_j W_j * s_ij||^2, (N,)."""
    return errors + lam * S.abs().sum(dim=(1, 2, 3))


def _per_image(X, W, S, lam, boundary):
    R = X - _synth(W, S, boundary)
    return _objective_terms((R**2).sum(dim=(1, 2)), S, lam)


def csc_objective(X, W, S, lam, boundary="valid") -> torch.Tensor:
    r""":math:`E_{\mathrm{csc}} = \frac1N\sum_i \|x_i - \sum_j W_j * s_{ij}\|_2^2 + \lambda\sum_j\|s_{ij}\|_1` (0-d tensor).

    Differentiable in X, W and S.
    """
    boundary = _check_boundary(boundary)
    W = _check_filters(W)
    X = _check_images(X, device=W.device)
    S = _check_codes(S, W, X, boundary)
    lam = check_scalar(lam, "lam")
    dtype = torch.promote_types(torch.promote_types(X.dtype, W.dtype), S.dtype)
    return _per_image(X.to(dtype), W.to(dtype), S.to(dtype), lam, boundary).mean()



def csc_fista(
    X,
    W,
    lam,
    n_iter=100,
    *,
    boundary="valid",
    step=None,
    S0=None,
    tol=0.0,
    monotone=False,
    history=False,
    backend="conv",
    adaptive_step=False,
    device=None,
):
    r"""FISTA on the code maps for :math:`E_{\mathrm{csc}}`, all images of the batch at once.

    One iteration: gradient step on the reconstruction error,
    :math:`Y - t\,2A_W^\top(A_W Y - x)` (a transposed convolution then a convolution),
    soft thresholding at :math:`t\lambda`, Nesterov momentum.  The step is
    :math:`t = 1/L` with :math:`L` from :func:`csc_lipschitz` (FFT bound) unless given.

    ``monotone=True`` is MFISTA (Beck & Teboulle 2009): per image, keep the better of the
    new proximal point and the previous iterate, so :math:`E_{\mathrm{csc}}` never increases.
    ``history=True`` also returns :math:`E_{\mathrm{csc}}` after every iteration.
    ``backend="conv"`` computes :math:`A_W` and :math:`A_W^\top` with ``conv_transpose2d`` /
    ``conv2d``; ``backend="fft"`` computes the very same operator with FFTs (faster for
    large filters or many of them; the result agrees to rounding).
    ``adaptive_step=True`` starts at the step ``step`` (default :math:`1/L`) and lets it grow
    by 1.1 per iteration as long as a backtracking test passes (halving it when it fails,
    never below :math:`1/L`, which always passes): the same cost per iteration, often
    far fewer iterations.  Not combined with ``monotone``.
    ``tol`` stops every image once its relative duality gap (dual point from the scaled
    residual, as for patch codes) is <= tol, checked every 10 iterations; converged images
    are frozen, ``n_iter`` stays the upper bound; with a ``tol`` the momentum restarts
    adaptively (O'Donoghue & Candès 2015).
    ``device=None`` computes where X lives (pass ``"auto"`` for the GPU when present).
    """
    boundary = _check_boundary(boundary)
    X = _check_images(X, device=get_device(device) if device is not None else None)
    W = _check_filters(W, device=X.device)
    dtype = torch.promote_types(X.dtype, W.dtype)
    X, W = X.to(dtype), W.to(dtype)
    lam = check_scalar(lam, "lam")
    n_iter = check_int(n_iter, "n_iter", low=0)
    tol = check_scalar(tol, "tol")
    if backend not in ("conv", "fft"):
        raise ValueError(f"backend must be 'conv' or 'fft'; got {backend!r}")
    if adaptive_step and monotone:
        raise ValueError("adaptive_step=True cannot be combined with monotone=True")
    if step is not None:
        step = check_scalar(step, "step", low=0.0, low_inclusive=False)
    cs = code_shape(X.shape, W.shape, boundary)
    if S0 is None:
        S = torch.zeros(X.shape[0], W.shape[0], *cs, dtype=dtype, device=X.device)
    else:
        S = _check_codes(S0, W, X, boundary).to(dtype).clone()
    S, hist, _, _ = _csc_fista(X, W, lam, n_iter, boundary, step, S, tol, monotone, history, backend, adaptive_step)
    return (S, hist) if history else S


def _csc_smooth(X, synth, adj, adaptive):
    """The reconstruction error of every image for the loop: a QuadraticResidual (adaptive step) or a Smooth."""
    if adaptive:
        return QuadraticResidual(lambda V: synth(V) - X, adj,
                                 restrict=lambda rows: _csc_smooth(X[rows], synth, adj, True))
    return Smooth(
        lambda Y: 2.0 * adj(synth(Y) - X),
        lambda Y: ((X - synth(Y)) ** 2).sum(dim=(1, 2)),
        lambda Y, t: torch.add(Y, adj(synth(Y) - X), alpha=-2.0 * t),  # Y - t 2 A^T (A Y - x), fused
        restrict=lambda rows: _csc_smooth(X[rows], synth, adj, False),
    )


def _csc_gap_terms(X, S, R, adj, lam):
    """Primal value, duality gap and correlations per image, from the residual R = A S - x (as for patches)."""
    C = adj(-R)  # A^T (x - A S)
    rr = (R * R).sum(dim=(1, 2))
    P = rr + lam * S.abs().sum(dim=(1, 2, 3))
    cmax = C.abs().amax(dim=(1, 2, 3))
    alpha = torch.where(cmax > 0.5 * lam, 0.5 * lam / cmax.clamp_min(1e-300), torch.ones_like(cmax))
    D = 2.0 * alpha * (X * -R).sum(dim=(1, 2)) - alpha * alpha * rr
    return P, (P - D).clamp_min(0.0)


def _csc_fista(X, W, lam, n_iter, boundary, step, S, tol, monotone, history, backend, adaptive_step, objective=False):
    """csc_fista without the checks.  Returns (S, history, per-image objective or None, last step)."""
    cs = tuple(S.shape[-2:])
    synth, adj = _operators(W, X, boundary, backend, cs)
    t_safe = None
    if step is None or adaptive_step:
        L = csc_lipschitz(W, X.shape[-2:], boundary)
        t_safe = 1.0 / L if L > 0 else 1.0
    t = t_safe if step is None else step
    check = None
    if tol > 0:
        def check(rows, S_rows, smooth, R=None):
            if R is None:
                R = synth(S_rows) - X[rows]
            P, gap = _csc_gap_terms(X[rows], S_rows, R, adj, lam)
            return gap <= tol * P

    res = accelerated_proximal_gradient(
        _csc_smooth(X, synth, adj, adaptive_step), soft_prox(lam), S, t, n_iter, monotone=monotone, restart=tol > 0,
        backtrack=adaptive_step, step_min=t_safe, history=history, check=check)
    obj = None
    if objective:
        R = res.residual if res.residual is not None else synth(res.S) - X
        obj = _objective_terms((R**2).sum(dim=(1, 2)), res.S, lam)
    return res.S, res.history, obj, res.step
