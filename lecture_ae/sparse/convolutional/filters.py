r"""CSC filter learning: alternate codes (FISTA) and filters (projected FISTA in the Fourier domain, unit ball).

See :mod:`lecture_ae.sparse.convolutional`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..._checks import check_int, check_scalar
from ...runtime import get_device, make_generator, progress
from ..proximal import Smooth, accelerated_proximal_gradient, ball_prox
from .coding import _csc_fista, _objective_terms, _per_image
from .operators import _check_boundary, _check_filters, _check_images, code_shape

__all__ = ["ConvLearningResult", "init_filters", "learn_conv_filters"]

# ------------------------------------------------------------------ filter update
def _project_unit_ball(W):
    return ball_prox((1, 2)).apply(W, 1.0)


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

    # projected FISTA: the one proximal-gradient loop with the projection onto the unit ball as prox
    Wk = accelerated_proximal_gradient(Smooth(grad), ball_prox((1, 2)), W, t, n_iter).S
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


