r"""Convolutional sparse coding (CSC): :math:`x = \sum_j W_j * s_j`.

Patch-based sparse coding codes every patch on its own, so a dictionary must hold
one copy of an edge for every position at which it can sit in the patch: it learns
*shifted replicas* of a few filters.  Convolutional sparse coding codes the whole
image at once (Kavukcuoglu et al. 2010): the image is a sum of h small filters
:math:`W_j` (k x k) convolved with h *code maps* :math:`s_j`, so a shift of an edge is
a shift in the code map, and the filters are free to differ.

Shapes.  A batch of N grey images ``X`` is (N, H, Wd) (a single (H, Wd) image is
accepted); the filters ``W`` are (h, k, k); the code maps ``S`` are (N, h, H', Wd').

Boundary.

* ``"valid"`` (default): the code maps are smaller than the image,
  :math:`H' = H - k + 1`, and every filter placement lies inside the image.  The
  synthesis is exactly a *transposed convolution*,
  ``torch.nn.functional.conv_transpose2d(S, W)``, and its adjoint the ordinary
  convolution (cross-correlation) ``conv2d(X, W)``.
* ``"circular"``: the code maps have the image's size and the filters wrap around
  the borders (the periodic model that SPORCO's ``ConvBPDN`` solves with FFTs).  The
  synthesis is the transposed convolution followed by folding the k - 1 overflow
  rows/columns back onto the first ones; the adjoint pads the image periodically and
  convolves.

The objective, written once (no factor 1/2, mean over the N images):

.. math::

    E_{\mathrm{csc}}(W, S) = \frac1N \sum_i \Big\|x_i - \sum_j W_j * s_{ij}\Big\|_2^2
    + \lambda \sum_j \|s_{ij}\|_1 .

The codes are inferred by FISTA on the code maps with step :math:`1/L`,
:math:`L = 2\|A_W\|^2`, where :math:`A_W: S \mapsto \sum_j W_j * s_j`.  Its norm is
read off the Fourier transform: :math:`\|A_W\|^2 = \max_\omega \sum_j
|\hat W_j(\omega)|^2` (exact for ``"circular"``; an upper bound, hence a safe step,
for ``"valid"``, which is the circular operator restricted to zero-padded codes).
With ``adaptive_step=True`` the step starts at :math:`1/L` and is allowed to grow
while a backtracking test shows that the quadratic model still majorises the
reconstruction error along the step actually taken (FISTA with backtracking that may
increase the step, Calatroni & Chambolle 2019): :math:`1/L` is the worst case over all
directions, the steps FISTA takes often tolerate a several times larger one.

The filters are learned by alternating updates: codes by FISTA with the filters
fixed, then filters by projected FISTA with the codes fixed, each filter kept in
the unit ball :math:`\|W_j\|_2 \le 1` (at a solution the filters sit on the sphere:
a shorter filter would need larger, costlier codes).  The filter step is done in
the Fourier domain, where the code maps enter only through the per-frequency
h x h Gram matrices :math:`\sum_i \hat s_i(\omega) \hat s_i(\omega)^H` (as in
SPORCO's dictionary update); a filter step is kept only when it lowers
:math:`E_{\mathrm{csc}}`, so the recorded objective never increases.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import as_tensor, check_int, check_scalar
from ..runtime import get_device, make_generator, progress

__all__ = [
    "BOUNDARIES",
    "code_shape",
    "conv_synthesis",
    "conv_adjoint",
    "csc_objective",
    "csc_lipschitz",
    "csc_fista",
    "ConvLearningResult",
    "init_filters",
    "learn_conv_filters",
    "highpass",
    "image_crops",
    "shift_correlation",
    "replica_scores",
    "replica_score",
]

BOUNDARIES = ("valid", "circular")


# ------------------------------------------------------------------------- checks
def _check_boundary(boundary):
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}; got {boundary!r}")
    return boundary


def _check_images(X, device=None, name="X"):
    X = as_tensor(X, name, shape="(N, H, Wd) or (H, Wd)", device=device)
    if X.dim() == 2:
        X = X[None]
    if X.dim() != 3:
        raise ValueError(f"{name} must have shape (N, H, Wd) or (H, Wd); got shape {tuple(X.shape)}")
    return X


def _check_filters(W, device=None):
    W = as_tensor(W, "W", ndim=3, shape="(h, k, k)", device=device)
    if W.shape[0] < 1 or W.shape[1] < 1 or W.shape[2] < 1:
        raise ValueError(f"W must have shape (h, k, k) with h, k >= 1; got {tuple(W.shape)}")
    return W


def code_shape(image_shape, kernel_shape, boundary="valid") -> tuple[int, int]:
    """Size (H', Wd') of the code maps for an image (H, Wd) and filters (k, k)."""
    _check_boundary(boundary)
    (H, Wd), (kh, kw) = tuple(image_shape)[-2:], tuple(kernel_shape)[-2:]
    if boundary == "circular":
        if kh > H or kw > Wd:
            raise ValueError(f"filters {(kh, kw)} must not be larger than the image {(H, Wd)}")
        return H, Wd
    if kh > H or kw > Wd:
        raise ValueError(f"filters {(kh, kw)} must not be larger than the image {(H, Wd)}")
    return H - kh + 1, Wd - kw + 1


def _check_codes(S, W, X=None, boundary="valid"):
    S = as_tensor(S, "S", ndim=4, shape="(N, h, H', Wd')", device=W.device)
    if S.shape[1] != W.shape[0]:
        raise ValueError(f"S must have shape (N, h, H', Wd') with h = W.shape[0] = {W.shape[0]}; got {tuple(S.shape)}")
    if X is not None:
        if S.shape[0] != X.shape[0]:
            raise ValueError(f"S must have N = {X.shape[0]} code maps (one per image); got {S.shape[0]}")
        want = code_shape(X.shape, W.shape, boundary)
        if tuple(S.shape[2:]) != want:
            raise ValueError(f"S must have code maps of size {want} for boundary={boundary!r}; got {tuple(S.shape[2:])}")
    return S


# ------------------------------------------------------------------ the operator
def _synth(W, S, boundary):
    """sum_j W_j * s_j for S (N, h, H', Wd') -> (N, H, Wd); no checks."""
    y = F.conv_transpose2d(S, W[:, None])[:, 0]  # (N, H'+k-1, Wd'+k-1)
    if boundary == "valid":
        return y
    H, Wd = S.shape[-2:]
    kh, kw = W.shape[-2:]
    x = y[:, :H, :Wd].clone()
    # fold the overflow back (periodic model): rows, then columns (the corner gets both)
    x[:, : kh - 1, :] += y[:, H:, :Wd]
    x[:, :, : kw - 1] += y[:, :H, Wd:]
    x[:, : kh - 1, : kw - 1] += y[:, H:, Wd:]
    return x


def _adj(W, R, boundary):
    """Adjoint of _synth: R (N, H, Wd) -> (N, h, H', Wd'); no checks."""
    R = R[:, None]
    if boundary == "circular":
        kh, kw = W.shape[-2:]
        R = F.pad(R, (0, kw - 1, 0, kh - 1), mode="circular")
    return F.conv2d(R, W[:, None])


def conv_synthesis(W, S, boundary="valid") -> torch.Tensor:
    r"""The CSC reconstruction :math:`\hat x = \sum_j W_j * s_j` (a transposed convolution).

    ``W`` (h, k, k) filters, ``S`` (N, h, H', Wd') code maps; returns (N, H, Wd) with
    :math:`H = H' + k - 1` for ``"valid"`` and :math:`H = H'` for ``"circular"``.
    """
    boundary = _check_boundary(boundary)
    W = _check_filters(W)
    S = _check_codes(S, W)
    dtype = torch.promote_types(W.dtype, S.dtype)
    if boundary == "circular" and (W.shape[1] > S.shape[2] or W.shape[2] > S.shape[3]):
        raise ValueError(f"filters {tuple(W.shape[1:])} must not be larger than the code maps {tuple(S.shape[2:])}")
    return _synth(W.to(dtype), S.to(dtype), boundary)


def conv_adjoint(W, R, boundary="valid") -> torch.Tensor:
    r"""The adjoint :math:`A_W^\top r = (W_j \star r)_j`: correlate an image batch with every filter.

    ``R`` (N, H, Wd) -> (N, h, H', Wd').  :math:`\langle A_W S, R\rangle = \langle S, A_W^\top R\rangle`.
    """
    boundary = _check_boundary(boundary)
    W = _check_filters(W)
    R = _check_images(R, device=W.device, name="R")
    code_shape(R.shape, W.shape, boundary)
    dtype = torch.promote_types(W.dtype, R.dtype)
    return _adj(W.to(dtype), R.to(dtype), boundary)


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


def _fft_gain(W, grid):
    """max_omega sum_j |W_j^(omega)|^2 on the DFT grid ``grid`` (float64)."""
    Wf = torch.fft.rfft2(W.double(), s=grid)
    return float((Wf.real**2 + Wf.imag**2).sum(dim=0).max())


def csc_lipschitz(W, image_shape, boundary="valid", *, method="fft", n_iter=50, seed=0) -> float:
    r"""Lipschitz constant :math:`L = 2\|A_W\|^2` of the gradient of the reconstruction term in S.

    ``method="fft"``: :math:`2\max_\omega \sum_j |\hat W_j(\omega)|^2` on the image's DFT grid,
    exact for ``"circular"`` and an upper bound for ``"valid"`` (safe step).
    ``method="power"``: ``n_iter`` power iterations on :math:`A_W^\top A_W` (an estimate
    from below; converges to the exact value of the chosen boundary).
    """
    boundary = _check_boundary(boundary)
    W = _check_filters(W)
    if len(tuple(image_shape)) < 2:
        raise ValueError(f"image_shape must be (H, Wd); got {image_shape!r}")
    H, Wd = (int(v) for v in tuple(image_shape)[-2:])
    cs = code_shape((H, Wd), W.shape, boundary)
    if method == "fft":
        return 2.0 * _fft_gain(W, (H, Wd))
    if method != "power":
        raise ValueError(f"method must be 'fft' or 'power'; got {method!r}")
    n_iter = check_int(n_iter, "n_iter")
    gen = make_generator(seed)
    Wd64 = W.double()
    v = torch.randn(1, W.shape[0], *cs, generator=gen, dtype=torch.float64).to(W.device)
    lam_max = 0.0
    for _ in range(n_iter):
        v = v / torch.linalg.vector_norm(v)
        u = _adj(Wd64, _synth(Wd64, v, boundary), boundary)
        lam_max = float((u * v).sum())
        v = u
    return 2.0 * lam_max


# ------------------------------------------------------------------------- FISTA
def _converged(S_new, S_old, tol):
    if tol <= 0:
        return False
    return float(torch.linalg.vector_norm(S_new - S_old)) <= tol * max(float(torch.linalg.vector_norm(S_new)), 1e-30)


class _FFTOperator:
    """The same operator A_W, computed with FFTs on the image's DFT grid (valid codes zero-padded)."""

    def __init__(self, W, image_shape, code_shape_):
        self.grid = tuple(image_shape)
        self.cs = tuple(code_shape_)
        self.Wf = torch.fft.rfft2(W, s=self.grid)  # (h, H, F)
        self.Wfc = self.Wf.conj()
        self.crop = self.cs != self.grid

    def synth(self, S):
        Sf = torch.fft.rfft2(S, s=self.grid)
        return torch.fft.irfft2((Sf * self.Wf).sum(dim=1), s=self.grid)

    def adj(self, R):
        Rf = torch.fft.rfft2(R)[:, None]
        out = torch.fft.irfft2(Rf * self.Wfc, s=self.grid)
        return out[..., : self.cs[0], : self.cs[1]] if self.crop else out


def _operators(W, X, boundary, backend, cs):
    if backend == "fft":
        op = _FFTOperator(W, X.shape[-2:], cs)
        return op.synth, op.adj

    def synth(V):
        return _synth(W, V, boundary)

    def adj(R):
        return _adj(W, R, boundary)

    return synth, adj


def _sq_dist(U, V):
    return float(torch.dist(U, V)) ** 2


def _fista_adaptive(X, synth, adj, lam, t0, t_min, S, n_iter, tol, history, grow=1.1, shrink=0.5):
    """FISTA whose step may grow, with backtracking (Calatroni & Chambolle 2019, mu = 0).

    The reconstruction error f(S) = ||A S - x||^2 is quadratic, so the backtracking test
    f(Z) <= f(Y) + <grad f(Y), Z - Y> + ||Z - Y||^2 / (2 tau) reads ||A (Z - Y)||^2 <= ||Z - Y||^2 / (2 tau),
    and A Y, grad f(Y) are the same affine combination of the values at the last two
    iterates as Y itself: one synthesis per trial and one adjoint per iteration, as plain FISTA.
    A step tau <= t_min = 1/L always passes.
    """
    R = synth(S) - X  # A S - x
    G = adj(2.0 * R)  # grad f(S)
    S_prev, R_prev, G_prev = S, R, G
    tau, tk = t0, 1.0
    hist = []
    for _ in range(n_iter):
        tau_new = tau * grow
        while True:
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk * tau / tau_new))
            beta = (tk - 1.0) / t_next
            if beta == 0.0:
                Y, RY, GY = S, R, G
            else:  # Y = S + beta (S - S_prev), and the same for A Y - x and grad f(Y)
                Y, RY, GY = torch.lerp(S, S_prev, -beta), torch.lerp(R, R_prev, -beta), torch.lerp(G, G_prev, -beta)
            Z = F.softshrink(torch.add(Y, GY, alpha=-tau_new), lam * tau_new)
            RZ = synth(Z) - X
            if tau_new <= t_min or 2.0 * tau_new * _sq_dist(RZ, RY) <= _sq_dist(Z, Y):
                break
            tau_new = max(tau_new * shrink, t_min)
        done = _converged(Z, S, tol)
        S_prev, R_prev, G_prev = S, R, G
        S, R = Z, RZ
        G = adj(2.0 * R)
        tau, tk = tau_new, t_next
        if history:
            hist.append(float(_objective_terms((R**2).sum(dim=(1, 2)), S, lam).mean()))
        if done:
            break
    return S, hist, R, tau


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


def _csc_fista(X, W, lam, n_iter, boundary, step, S, tol, monotone, history, backend, adaptive_step, objective=False):
    """csc_fista without the checks.  Returns (S, history, per-image objective or None, last step)."""
    cs = tuple(S.shape[-2:])
    synth, adj = _operators(W, X, boundary, backend, cs)
    t_safe = None
    if step is None or adaptive_step:
        L = csc_lipschitz(W, X.shape[-2:], boundary)
        t_safe = 1.0 / L if L > 0 else 1.0
    t = t_safe if step is None else step
    if adaptive_step:
        S, hist, R, tau = _fista_adaptive(X, synth, adj, lam, t, t_safe, S, n_iter, tol, history)
        obj = _objective_terms((R**2).sum(dim=(1, 2)), S, lam) if objective else None
        return S, hist, obj, tau

    def per_image(V):
        return _objective_terms(((X - synth(V)) ** 2).sum(dim=(1, 2)), V, lam)

    Y = S.clone()
    tk = 1.0
    hist = []
    f_S = per_image(S) if monotone else None
    for _ in range(n_iter):
        Z = F.softshrink(torch.add(Y, adj(synth(Y) - X), alpha=-2.0 * t), lam * t)  # = soft_threshold, fused
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
        if monotone:
            f_Z = per_image(Z)
            better = (f_Z <= f_S)[:, None, None, None]
            S_new = torch.where(better, Z, S)
            f_S = torch.minimum(f_Z, f_S)
            Y = S_new + (tk / t_next) * (Z - S_new) + ((tk - 1.0) / t_next) * (S_new - S)
        else:
            S_new = Z
            Y = torch.lerp(S_new, S, (1.0 - tk) / t_next)  # S_new + (tk - 1) / t_next * (S_new - S)
        done = _converged(S_new, S, tol)
        S, tk = S_new, t_next
        if history:
            hist.append(float(f_S.mean()) if monotone else float(per_image(S).mean()))
        if done:
            break
    return S, hist, (per_image(S) if objective else None), t


# ------------------------------------------------------------------ filter update
def _project_unit_ball(W):
    return W / torch.linalg.vector_norm(W, dim=(1, 2), keepdim=True).clamp_min(1.0)


def _parseval_weights(H, Wd, like):
    """Weights on the flattened rfft2 grid such that sum(w |r^|^2) = ||r||^2 (the half-spectrum counts twice)."""
    w = torch.full((Wd // 2 + 1,), 2.0, dtype=like.real.dtype, device=like.device)
    w[0] = 1.0
    if Wd % 2 == 0:
        w[-1] = 1.0
    return (w / (H * Wd)).repeat(H)


def _filter_step(W, X, S, n_iter):
    """Projected FISTA on the filters for fixed codes, in the Fourier domain.

    Reconstruction term (1/N) sum_i ||x_i - sum_j W_j * s_ij||^2 on the DFT grid of the
    image (valid codes are zero-padded: linear = circular convolution there).
    Per frequency: gradient of (1/N)||x^ - s^^T w^||^2 -> G(omega) w^ - b(omega), with
    G(omega) = sum_i conj(s_i^) s_i^^T (h x h, rank <= N).  With few images (2N <= h) the
    gradient is computed from the codes directly and the step from the N x N matrices
    s_i^^T conj(s_l^), which have the same non-zero eigenvalues: far less work.
    Returns the filters and the reconstruction error of every image with them, (N,).
    """
    N, h = S.shape[:2]
    H, Wd = X.shape[-2:]
    kh, kw = W.shape[-2:]
    Sf = torch.fft.rfft2(S, s=(H, Wd)).reshape(N, h, -1)  # (N, h, F)
    Xf = torch.fft.rfft2(X).reshape(N, -1)  # (N, F)
    Sfc = Sf.conj()
    wgt = _parseval_weights(H, Wd, Xf)

    def errors(V):  # ||x_i - sum_j V_j * s_ij||^2 per image, by Parseval
        Vf = torch.fft.rfft2(V, s=(H, Wd)).reshape(h, -1)
        U = (Sf * Vf).sum(dim=1) - Xf
        return ((U.real**2 + U.imag**2) * wgt).sum(dim=1)

    low_rank = 2 * N <= h
    if low_rank:
        if N == 1:
            lam_max = float((Sf.real**2 + Sf.imag**2).sum(dim=1).amax())
        else:
            K = (Sf[:, None] * Sfc[None]).sum(dim=2).permute(2, 0, 1)  # (F, N, N) Hermitian
            lam_max = float(torch.linalg.eigvalsh(K).amax())
    else:
        # G[f] = sum_i conj(s_i(f)) s_i(f)^T  (h x h Hermitian), b[f] = sum_i conj(s_i(f)) x_i(f)
        G = torch.einsum("njf,nkf->fjk", Sfc, Sf)
        b = torch.einsum("njf,nf->fj", Sfc, Xf)
        lam_max = float(torch.linalg.eigvalsh(G).amax())
    # Lipschitz constant of the gradient (2/N) A_S^T (A_S w - x): (2/N) max_f lambda_max(G[f])
    L = 2.0 / N * lam_max
    if L <= 0:
        return W, errors(W)
    t = 1.0 / L

    def grad(V):
        # (2/N) sum_i A_{s_i}^T (A_{s_i} V - x_i): correlation = irfft2(conj(s^) r^), cropped to k x k
        if low_rank:  # from the codes directly: O(N h) per frequency instead of O(h^2)
            Vf = torch.fft.rfft2(V, s=(H, Wd)).reshape(h, -1)  # (h, F)
            U = (Sf * Vf).sum(dim=1) - Xf  # (N, F)
            Rf = (Sfc * U[:, None]).sum(dim=0)  # (h, F)
        else:
            Vf = torch.fft.rfft2(V, s=(H, Wd)).reshape(h, -1).T  # (F, h)
            Rf = (torch.einsum("fjk,fk->fj", G, Vf) - b).T  # (h, F)
        return (2.0 / N) * torch.fft.irfft2(Rf.reshape(h, H, -1), s=(H, Wd))[:, :kh, :kw]

    Wk, Y, tk = W, W.clone(), 1.0
    for _ in range(n_iter):
        Z = _project_unit_ball(Y - t * grad(Y))
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
        Y = Z + ((tk - 1.0) / t_next) * (Z - Wk)
        Wk, tk = Z, t_next
    return Wk, errors(Wk)


def init_filters(X, n_filters, kernel_size, *, seed=0, device=None) -> torch.Tensor:
    """``n_filters`` unit-norm k x k filters cut at random places out of the images X (N, H, Wd)."""
    X = _check_images(X, device=get_device(device) if device is not None else None)
    h = check_int(n_filters, "n_filters")
    k = check_int(kernel_size, "kernel_size")
    N, H, Wd = X.shape
    if k > min(H, Wd):
        raise ValueError(f"kernel_size must be <= the image size {(H, Wd)}; got {k}")
    gen = make_generator(seed)
    n = torch.randint(N, (h,), generator=gen)
    r = torch.randint(H - k + 1, (h,), generator=gen)
    c = torch.randint(Wd - k + 1, (h,), generator=gen)
    W = torch.stack([X[int(n[j]), int(r[j]) : int(r[j]) + k, int(c[j]) : int(c[j]) + k] for j in range(h)])
    W = W - W.mean(dim=(1, 2), keepdim=True)
    noise = torch.randn(h, k, k, generator=gen, dtype=X.dtype).to(X.device)
    norms = torch.linalg.vector_norm(W, dim=(1, 2), keepdim=True)
    W = torch.where(norms > 1e-8, W, noise)
    return W / torch.linalg.vector_norm(W, dim=(1, 2), keepdim=True)


@dataclass
class ConvLearningResult:
    """Filters ``W`` (h, k, k), code maps ``S``, and :math:`E_{\\mathrm{csc}}` after each outer
    iteration with the seconds of the algorithm's own work."""

    W: torch.Tensor
    S: torch.Tensor
    objective: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def learn_conv_filters(
    X,
    n_filters,
    kernel_size,
    lam,
    *,
    n_iter=20,
    encoder_iter=30,
    filter_iter=10,
    boundary="valid",
    backend="conv",
    adaptive_step=False,
    W0=None,
    seed=0,
    device=None,
    show_progress=None,
) -> ConvLearningResult:
    r"""Learn h = ``n_filters`` unit-norm k x k filters on a batch of images by alternating updates.

    Each outer iteration: ``encoder_iter`` FISTA steps on the code maps (warm-started;
    kept only if they lower the objective, which they do unless FISTA was already
    converged), then ``filter_iter`` projected FISTA steps on the filters
    (:math:`\|W_j\| \le 1`) with the codes fixed, kept only if they lower
    :math:`E_{\mathrm{csc}}`.  So the recorded objective never increases.
    ``backend`` and ``adaptive_step`` are passed to :func:`csc_fista`.
    """
    boundary = _check_boundary(boundary)
    X = _check_images(X, device=get_device(device) if device is not None else None)
    lam = check_scalar(lam, "lam")
    n_iter = check_int(n_iter, "n_iter")
    encoder_iter = check_int(encoder_iter, "encoder_iter")
    filter_iter = check_int(filter_iter, "filter_iter")
    if W0 is None:
        W = init_filters(X, n_filters, kernel_size, seed=seed)
    else:
        h = check_int(n_filters, "n_filters")
        k = check_int(kernel_size, "kernel_size")
        W = _check_filters(W0, device=X.device).to(X.dtype)
        if W.shape != (h, k, k):
            raise ValueError(f"W0 must have shape (h, k, k) = {(h, k, k)}; got {tuple(W.shape)}")
        W = _project_unit_ball(W.clone())
    if backend not in ("conv", "fft"):
        raise ValueError(f"backend must be 'conv' or 'fft'; got {backend!r}")
    cs = code_shape(X.shape, W.shape, boundary)
    S = torch.zeros(X.shape[0], W.shape[0], *cs, dtype=X.dtype, device=X.device)
    res = ConvLearningResult(W=W, S=S)
    obj = float(_per_image(X, W, S, lam, boundary).mean())
    res.objective.append(obj)
    res.seconds.append(0.0)
    elapsed = 0.0
    step = None  # adaptive step: the next code step starts where the last one ended (backtracking corrects it)
    bar = progress(range(n_iter), show=show_progress, desc="convolutional dictionary learning", leave=False)
    for _ in bar:
        _sync(X.device)
        t0 = time.perf_counter()
        S_new, _, per_image, tau = _csc_fista(X, W, lam, encoder_iter, boundary, step, S, 0.0, False, False, backend,
                                              adaptive_step, objective=True)
        if adaptive_step:
            step = tau
        obj_new = float(per_image.mean())
        if obj_new <= obj:
            S, obj = S_new, obj_new
        W_new, errors = _filter_step(W, X, S, filter_iter)
        obj_new = float(_objective_terms(errors, S, lam).mean())
        if obj_new <= obj:
            W, obj = W_new, obj_new
        _sync(X.device)
        elapsed += time.perf_counter() - t0
        res.objective.append(obj)
        res.seconds.append(elapsed)
        bar.set_postfix(objective=f"{obj:.4g}")
    res.W, res.S = W, S
    return res


# ------------------------------------------------------------------- real images
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
    from ..data.images import load_image

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


# ---------------------------------------------------------------- replica score
def _as_atoms(W, patch_shape=None):
    """Filters (h, k, k) or dictionary columns (d, h) + patch_shape -> (h, k, k) float64."""
    W = as_tensor(W, "W", shape="(h, k, k) or (d, h)")
    if W.dim() == 2:
        if patch_shape is None:
            k = int(round(math.sqrt(W.shape[0])))
            if k * k != W.shape[0]:
                raise ValueError(f"patch_shape is needed: d = {W.shape[0]} rows of W is not a square")
            patch_shape = (k, k)
        if patch_shape[0] * patch_shape[1] != W.shape[0]:
            raise ValueError(f"patch_shape {patch_shape} does not match d = {W.shape[0]} rows of W")
        W = W.T.reshape(W.shape[1], *patch_shape)
    elif W.dim() != 3:
        raise ValueError(f"W must have shape (h, k, k) or (d, h); got {tuple(W.shape)}")
    return W.double()


def shift_correlation(a, b) -> torch.Tensor:
    r"""Normalised cross-correlation of two k x k atoms at every shift: (2k-1, 2k-1).

    Entry :math:`(u, v)` is :math:`\langle a, \tau_{u,v} b\rangle / (\|a\|\|b\|)`, where
    :math:`\tau_{u,v}` shifts b by (u, v) pixels and fills with zeros (the centre is shift 0).
    """
    a = as_tensor(a, "a", ndim=2, shape="(k, k)").double()
    b = as_tensor(b, "b", ndim=2, shape="(k, k)").double()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    kh, kw = a.shape
    c = F.conv2d(F.pad(b[None, None], (kw - 1, kw - 1, kh - 1, kh - 1)), a[None, None])[0, 0]
    return c / max(float(torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)), 1e-30)


def replica_scores(W, patch_shape=None, *, max_shift=None) -> torch.Tensor:
    r"""Pairwise replica score :math:`r_{jl} = \max_{|u|,|v|\le m} |\mathrm{ncc}(w_j, \tau_{u,v} w_l)|`, (h, h).

    1 means that atom l is (up to sign) a shifted copy of atom j that fits in the patch;
    the diagonal is set to 0.  ``max_shift`` m defaults to k // 2 (shifts of up to half
    a patch, so that a replica keeps most of its mass).  ``W`` is a filter bank (h, k, k) or a
    patch dictionary (d, h) with ``patch_shape``.
    """
    A = _as_atoms(W, patch_shape)
    h, kh, kw = A.shape
    m = min(kh, kw) // 2 if max_shift is None else check_int(max_shift, "max_shift", low=0)
    A = A / torch.linalg.vector_norm(A, dim=(1, 2), keepdim=True).clamp_min(1e-30)
    # correlate every atom with every other, all shifts in one conv: (1, h, ., .) * (h, 1, k, k)
    padded = F.pad(A[:, None], (kw - 1, kw - 1, kh - 1, kh - 1))  # (h, 1, 3k-2, 3k-2)
    C = F.conv2d(padded, A[:, None])  # (h_l, h_j, 2k-1, 2k-1): C[l, j] = ncc(a_j, shifted a_l)
    ch, cw = kh - 1, kw - 1
    C = C[:, :, ch - m : ch + m + 1, cw - m : cw + m + 1]
    R = C.abs().amax(dim=(2, 3)).T.contiguous()
    R = torch.maximum(R, R.T)
    R.fill_diagonal_(0.0)
    return R


def replica_score(W, patch_shape=None, *, max_shift=None) -> dict[str, float]:
    """Summary of :func:`replica_scores`: for each atom its best replica among the others.

    Returns ``mean`` (mean over atoms of the best replica score), ``median``, the
    fraction of atoms with a replica above 0.8 (``frac_replicated``), and the same mean
    without shifts (``mean_no_shift``, the plain |cosine|), so that the gain from
    shifting is visible.
    """
    R = replica_scores(W, patch_shape, max_shift=max_shift)
    R0 = replica_scores(W, patch_shape, max_shift=0)
    best = R.amax(dim=1)
    return {
        "mean": float(best.mean()),
        "median": float(best.median()),
        "frac_replicated": float((best > 0.8).double().mean()),
        "mean_no_shift": float(R0.amax(dim=1).mean()),
    }
