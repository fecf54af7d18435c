r"""Replica scores: how many atoms of a filter bank or patch dictionary are shifted copies of one another."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..._checks import as_tensor, check_int

__all__ = ["shift_correlation", "replica_scores", "replica_score"]

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
