r"""CSC operators: the synthesis :math:`A_W S = \sum_j W_j * s_j`, its adjoint, the same two with FFTs, and :math:`\|A_W\|^2`.

Shapes and boundaries: see :mod:`lecture_ae.sparse.convolutional`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._checks import as_tensor, check_int
from ...runtime import make_generator

__all__ = ["BOUNDARIES", "code_shape", "conv_synthesis", "conv_adjoint", "csc_lipschitz"]

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


