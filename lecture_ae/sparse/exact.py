r"""Exact codes for the L1 objective, fast: certified by the duality gap.

:func:`lasso` returns, for every sample, codes whose relative duality gap
(:func:`~lecture_ae.sparse.coding.l1_duality_gap`) is at most ``tol`` (1e-10 by default):
within ``tol`` of the optimum of :math:`\|x - Ws\|^2 + \lambda\|s\|_1`, and *proved* so.

How, on the CPU.  The Lasso homotopy (LARS with drops, :mod:`lecture_ae.sparse._homotopy`,
compiled with numba, samples in parallel over ``torch.get_num_threads()`` threads) follows the
path of every sample's codes from :math:`\lambda = \infty` down to the lecture's
:math:`\lambda` event by event and solves the optimality conditions on the final support; the
duality gap then certifies each sample, and a sample it does not certify (nearly collinear atoms,
float32 rounding) goes on by the proximal-gradient path below, started from the homotopy's codes.

How, on the GPU (and for those samples).  FISTA with adaptive restart on the Gram matrix :math:`G = W^\top W` (computed once,
with :math:`B = XW`) finds the support of the codes; every ``check_every`` iterations the
samples whose support has stopped changing are *polished*: on the support A with the signs
:math:`\sigma` of the current codes, the optimality conditions of the L1 objective are the
linear system

.. math:: G_{AA}\, s_A = b_A - \tfrac{\lambda}{2}\sigma_A,

solved for all those samples at once (batched Cholesky, samples grouped by support size).
The solution is kept, and the sample frozen, only if its duality gap certifies it (which
checks the signs on A and the subgradients :math:`|w_j^\top r| \le \lambda/2` off A);
otherwise FISTA goes on.  A sample whose gap is already below ``tol`` is frozen as it is.

Degenerate dictionaries (duplicate, zero or nearly collinear atoms) make :math:`G_{AA}`
singular; the system is then solved with a tiny ridge (the minimum-norm split between twins)
and, as always, kept only when the gap certifies it.  The codes are then *an* optimum (the
problem has many), never a wrong one.
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_scalar
from .coding import (_GramLasso, _check_problem, _check_start, _gap_terms, _lipschitz_from_gram, _primal_terms,
                     _relative_gap)
from . import _homotopy
from .proximal import accelerated_proximal_gradient, soft_prox

__all__ = ["LassoResult", "lasso", "solve_on_support"]


@dataclass
class LassoResult:
    """Codes ``S`` (N, h), their relative duality gap ``gap`` (N,), the FISTA iterations each sample
    took ``n_iter`` (N,), and whether the gap reached ``tol`` (``converged``, (N,) bool)."""

    S: torch.Tensor
    gap: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor


def _size_groups(sizes, ratio=1.25):
    """Rows grouped by support size, each group padded to its largest size (at most ``ratio`` x the smallest)."""
    order = torch.argsort(sizes)
    ss = sizes[order]
    bounds = []
    n, i = ss.numel(), 0
    vals = ss.tolist()
    while i < n:
        top = max(vals[i], int(vals[i] * ratio))
        j = int(torch.searchsorted(ss, top, right=True))
        bounds.append((order[i:j], vals[j - 1]))
        i = j
    return bounds


def solve_on_support(G, B, support, signs, mu) -> torch.Tensor:
    r"""For every row i, the solution of :math:`G_{AA} s_A = b_A - \mu\,\sigma_A` on its support A, zero elsewhere.

    ``G`` (h, h) the Gram matrix, ``B`` (n, h) the correlations :math:`XW`, ``support`` (n, h) bool,
    ``signs`` (n, h) in {-1, 0, 1}, ``mu`` a number (:math:`\lambda/2`).  Batched Cholesky over the
    rows, grouped by support size; a singular :math:`G_{AA}` (twin or zero atoms) gets a ridge of
    1e-12 x its largest diagonal entry (the minimum-norm solution to that precision).
    """
    n, h = support.shape
    out = torch.zeros(n, h, dtype=G.dtype, device=G.device)
    if n == 0:
        return out
    Gx = torch.zeros(h + 1, h + 1, dtype=G.dtype, device=G.device)  # one extra identity row/column for padding
    Gx[:h, :h] = G
    Gx[h, h] = 1.0
    zero_col = torch.zeros(n, 1, dtype=G.dtype, device=G.device)
    rhs_all = torch.cat([B - mu * signs, zero_col], dim=1)
    cols = torch.arange(h, device=G.device)
    for rows, k in _size_groups(support.sum(dim=1)):
        if k == 0:
            continue
        key = torch.where(support[rows], cols, h)
        idx = key.sort(dim=1).values[:, :k]  # (m, k) the atoms of each support, padded with h
        M = Gx[idx[:, :, None], idx[:, None, :]]
        rhs = rhs_all[rows].gather(1, idx)
        L, info = torch.linalg.cholesky_ex(M)
        bad = info != 0
        if bool(bad.any()):  # singular: twins, zero atoms or collinear ones
            Mb = M[bad]
            scale = Mb.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)
            eye = torch.eye(k, dtype=G.dtype, device=G.device)
            for ridge in (1e-12, 1e-9, 1e-6):
                Lb, ib = torch.linalg.cholesky_ex(Mb + (ridge * scale)[:, None, None] * eye)
                if not bool((ib != 0).any()):
                    break
            L[bad] = Lb
        v = torch.cholesky_solve(rhs[:, :, None], L)[:, :, 0]
        blk = torch.zeros(rows.numel(), h + 1, dtype=G.dtype, device=G.device)
        blk.scatter_(1, idx, v)
        out[rows] = blk[:, :h]
    return out


def _distinct_atoms(W, cos_tol=1e-14):
    """Indices ``keep`` of the distinct non-zero atoms of W and, for every atom j, its representative
    ``rep[j]`` (index into keep, -1 for a zero atom) and ``scale[j]``: w_j = scale[j] * w_rep.

    Atoms that are parallel to rounding (twins, opposite twins, multiples) share one
    representative, the longest of them: a code on the representative alone is then optimal
    among all the ways of splitting it between the group (the L1 cost is lowest there).
    """
    h = W.shape[1]
    # in torch, not numpy: OpenBLAS's threads spin after a product and would take a core from the homotopy's
    Wd = W.double().cpu()
    nrm = torch.linalg.vector_norm(Wd, dim=0)
    Wn = Wd / nrm.clamp_min(1e-300)
    cos = (Wn.T @ Wn).numpy()  # (h, h): all the cosines at once
    norms = nrm.numpy()
    big = float(norms.max()) if h else 0.0
    order = np.argsort(-norms, kind="stable")
    rep = torch.full((h,), -1, dtype=torch.long)
    scale = torch.zeros(h, dtype=W.dtype)
    keep = []
    # an atom is a duplicate when it is parallel to an earlier kept one; test all pairs once, then walk in order
    parallel = np.abs(cos) >= 1.0 - cos_tol
    np.fill_diagonal(parallel, False)
    has_twin = parallel.any(axis=1)
    if not has_twin.any() and bool((norms > 1e-12 * max(big, 1e-300)).all()):  # the usual case: all distinct
        return torch.arange(h), torch.arange(h), torch.ones(h, dtype=W.dtype)
    for j in order.tolist():
        if norms[j] <= 1e-12 * max(big, 1e-300):
            continue  # a zero atom: its code is 0
        if keep and has_twin[j]:
            ck = cos[keep, j]
            i = int(np.argmax(np.abs(ck)))
            if abs(ck[i]) >= 1.0 - cos_tol:
                rep[j] = i
                scale[j] = float(np.sign(ck[i])) * float(norms[j] / norms[keep[i]])
                continue
        rep[j] = len(keep)
        scale[j] = 1.0
        keep.append(j)
    return torch.tensor(keep, dtype=torch.long), rep, scale


def lasso(X, W, lam, *, tol=1e-10, max_iter=5000, S0=None, check_every=5, device=None) -> LassoResult:
    r"""Codes for the L1 objective :math:`E_1`, certified within a relative duality gap ``tol`` per sample.

    Same problem as :func:`~lecture_ae.sparse.fista` (the lecture's :math:`E_1`, no factor 1/2).
    On the CPU the homotopy (see the module docstring) gives the exact codes and the gap
    certifies them (``n_iter`` 0); where it does not, and on the GPU, FISTA with adaptive
    restart finds the supports; every ``check_every`` iterations the
    duality gap freezes the samples that are done, and the others are polished: the exact
    solve on their current support and signs (see the module docstring).  A polished point
    that the gap certifies is returned; one that keeps the signs but misses atoms (its
    gap is not small yet) is better than the FISTA iterate on the same face, so FISTA jumps
    there and goes on with its momentum reset.  ``max_iter`` bounds the FISTA iterations of a
    sample; a sample that has not reached ``tol`` then is returned as it is, with
    ``converged`` False and its gap.  ``S0`` warm-starts (codes of a similar problem: the
    previous step of dictionary learning, say).
    """
    X, W = _check_problem(X, W, device=device)
    lam = check_scalar(lam, "lam")
    tol = check_scalar(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", low=0)
    check_every = check_int(check_every, "check_every")
    N, h = X.shape[0], W.shape[1]
    S = None if S0 is None else _check_start(S0, N, h, X)  # zeros only where a path needs them
    keep, rep, scale = _distinct_atoms(W)
    if keep.numel() < h:  # duplicate, opposite, parallel or zero atoms: solve on the distinct ones
        k_dev, rep_dev, scale_dev = keep.to(X.device), rep.to(X.device), scale.to(X.device)
        S_red = torch.zeros(N, keep.numel(), dtype=X.dtype, device=X.device)
        used = rep_dev >= 0
        if S is not None:
            S_red.index_add_(1, rep_dev[used], S[:, used] * scale_dev[used])  # the same reconstruction
        red = lasso(X, W[:, k_dev], lam, tol=tol, max_iter=max_iter, S0=S_red, check_every=check_every)
        S_full = torch.zeros(N, h, dtype=X.dtype, device=X.device)
        S_full[:, k_dev] = red.S
        P, gap, _ = _gap_terms(X, W, S_full, lam)
        rel = _relative_gap(P, gap)
        return LassoResult(S=S_full, gap=rel, n_iter=red.n_iter, converged=rel <= tol)
    if X.device.type == "cpu" and _homotopy.available() and N:
        out = _homotopy_codes(X, W, lam)
        if out is not None:
            S_h, P, gap = out
            ok = gap <= tol * P
            rel = _relative_gap(P, gap)
            n_iter = torch.zeros(N, dtype=torch.long)
            rest = (~ok).nonzero().flatten()
            if rest.numel():  # not certified (nearly collinear atoms, float32 rounding): the proximal-gradient path
                sub = _lasso_pg(X[rest], W, lam, tol, max_iter, S_h[rest], check_every)
                S_h[rest], rel[rest], n_iter[rest] = sub.S, sub.gap, sub.n_iter.to(torch.long)
            return LassoResult(S=S_h, gap=rel, n_iter=n_iter, converged=rel <= tol)
    return _lasso_pg(X, W, lam, tol, max_iter, _check_start(None, N, h, X) if S is None else S, check_every)


_WORK_ELEMENTS = 1 << 22  # float64 entries of B = XW computed at a time (32 MiB), in a buffer kept per thread
_work = threading.local()


def _workspace(size):
    """A float64 buffer of at least ``size`` entries, reused by the calls of this thread (no new pages to fault in)."""
    buf = getattr(_work, "buf", None)
    if buf is None or buf.size < size:
        buf = _work.buf = np.empty(size)
    return buf[:size]


def _homotopy_codes(X, W, lam):
    """The homotopy's codes (float64 arithmetic, X's dtype), their primal values and duality gaps, or None where
    numba fails (then a warning).

    B = XW is computed in chunks of rows into a buffer kept between calls: a fresh 20 MB array (n = 10,000,
    h = 256) cost more in first-touch page faults than the product itself.  The codes go into an array from
    ``np.empty`` that the kernel zeroes row by row (``np.zeros`` memset it all first, 7 ms there).  Chunks are
    32 MiB, not smaller: on 2 threads torch's OpenMP threads spin for a while after each chunk's product and take
    a core from the homotopy's threads (brick, h = 256, lam 0.5: 23.7 ms per call with 8 MiB chunks, 21.7-22.7 ms
    with 32 MiB); on one thread the size made no difference.
    """
    n, h = X.shape[0], W.shape[1]
    Wd = W.double()
    try:
        Xd = X.double()
        G = (Wd.T @ Wd).numpy()
        xx = torch.einsum("ij,ij->i", Xd, Xd).numpy()  # (no (n, d) temporary)
        S = np.empty((n, h))
        P, gap = np.empty(n), np.empty(n)
        rows = max(1, _WORK_ELEMENTS // max(h, 1))
        buf = _workspace(min(n, rows) * h)
        threads = torch.get_num_threads()
        for lo in range(0, n, rows):
            hi = min(n, lo + rows)
            B = buf[:(hi - lo) * h].reshape(hi - lo, h)
            torch.matmul(Xd[lo:hi], Wd, out=torch.from_numpy(B))
            _, _, P[lo:hi], gap[lo:hi] = _homotopy.homotopy(G, B, xx[lo:hi], 0.5 * lam, threads=threads,
                                                            S=S[lo:hi])
    except Exception as err:  # a numba that cannot compile here: the torch path still gives certified codes
        warnings.warn(f"sparse.lasso: the compiled homotopy failed ({err!r}); using the proximal-gradient path",
                      RuntimeWarning, stacklevel=3)
        return None
    if X.dtype != torch.float64:
        # the rounded codes against the float64 codes' dual value (_rounded_gap); their own residual, evaluated
        # in float32, left a camera patch (lam 0.1) at 1.4e-5 and sent it to the proximal-gradient path (0.65 s)
        S_r = torch.from_numpy(S).to(X.dtype)
        P_r, gap_r = _rounded_gap(Xd, Wd, S_r, lam, torch.from_numpy(P - gap))
        return S_r, P_r.to(X.dtype), gap_r.to(X.dtype)
    return torch.from_numpy(S), torch.from_numpy(P), torch.from_numpy(gap)


def _rounded_gap(X64, W64, S_r, lam, D):
    """Primal value (float64) of the codes S_r (rounded to a lower precision) and their gap against the dual
    values D of float64 codes: any dual-feasible point bounds the optimum from below, and the rounded codes' own
    scaled residual gives a far weaker bound where codes are large against lam (the scaling loses eps |s| / lam)."""
    _, _, P = _primal_terms(X64, W64, S_r.double(), lam)
    return P, (P - D).clamp_min(0.0)


def _lasso_pg(X, W, lam, tol, max_iter, S, check_every):
    """FISTA with restart and the exact polish on settled supports (the path on the GPU and the fallback).

    In a precision below float64 the polish is solved in float64 and its rounded codes certified against the
    float64 solution's dual value (:func:`_rounded_gap`): float32 iterates certify themselves only to about 1e-5
    (camera patches, h = 100, lam 0.1: 49 of 1,000 never reached 1e-5 in 5,000 iterations).
    """
    N, h = X.shape[0], W.shape[1]
    G = W.T @ W
    B = X @ W
    low = X.dtype != torch.float64
    W64 = W.double() if low else W
    G64 = W64.T @ W64 if low else G

    def polish(Xr, Br, support, signs):
        """The exact solve on a support and signs: codes in X's dtype, their primal value and gap."""
        if not low:
            V = solve_on_support(G, Br, support, signs, mu)
            Pv, gapv, _ = _gap_terms(Xr, W, V, lam)
            return V, Pv, gapv
        X64 = Xr.double()
        V64 = solve_on_support(G64, X64 @ W64, support, signs.double(), mu)
        P64, gap64, _ = _gap_terms(X64, W64, V64, lam)
        V = V64.to(X.dtype)
        Pv, gapv = _rounded_gap(X64, W64, V, lam, P64 - gap64)
        return V, Pv.to(X.dtype), gapv.to(X.dtype)
    L = _lipschitz_from_gram(G)
    t = 1.0 / L if L > 0 else 1.0
    mu = 0.5 * lam
    gaps = torch.full((N,), float("inf"), dtype=X.dtype, device=X.device)
    last_support = torch.zeros(N, h, dtype=torch.bool, device=X.device)

    def check(rows, S_rows, smooth, R=None):
        Xr = X[rows]
        P, gap, _ = _gap_terms(Xr, W, S_rows, lam)
        stop = gap <= tol * P
        gaps[rows] = _relative_gap(P, gap)
        support = S_rows != 0
        # polish only where the support has settled since the last check (and fits the data's dimension)
        # (and where FISTA's gap is already small enough: the polished point is the exact optimum there)
        settled = (stop | (support == last_support[rows]).all(dim=1)) & (support.sum(dim=1) <= W.shape[0])
        last_support[rows] = support
        todo = settled.nonzero().flatten()
        if todo.numel() == 0:
            return stop
        St = S_rows[todo]
        sig = torch.sign(St)
        V, Pv, gapv = polish(Xr[todo], B[rows[todo]], St != 0, sig)
        ok = gapv <= tol * Pv
        flipped = (torch.sign(V) != sig) & (sig != 0)
        retry = ((~ok) & flipped.any(dim=1)).nonzero().flatten()
        if retry.numel():  # signs flipped (nearly collinear atoms, say): drop those atoms and solve once more
            sig2 = torch.where(flipped[retry], torch.zeros_like(sig[retry]), sig[retry])
            V2, P2, gap2 = polish(Xr[todo[retry]], B[rows[todo[retry]]], sig2 != 0, sig2)
            V, Pv, gapv, sig = V.clone(), Pv.clone(), gapv.clone(), sig.clone()
            V[retry], Pv[retry], gapv[retry], sig[retry] = V2, P2, gap2, sig2
            ok = gapv <= tol * Pv
        better = (~ok) & (torch.sign(V) == sig).all(dim=1) & (Pv < P[todo])
        values = S_rows.clone()
        ok = ok & (gapv <= gap[todo])  # for one FISTA had certified, only a better certificate replaces it
        better = better & ~stop[todo]
        values[todo] = torch.where((ok | better)[:, None], V, St)
        stop = stop.clone()
        stop[todo[ok]] = True
        gaps[rows[todo[ok]]] = _relative_gap(Pv[ok], gapv[ok])
        jump = torch.zeros_like(stop)
        jump[todo[better]] = True
        return stop, values, jump

    res = accelerated_proximal_gradient(_GramLasso(X, W, G, B), soft_prox(lam), S, t, max_iter, restart=True,
                                        check=check, check_every=check_every)
    if max_iter == 0:
        P, gap, _ = _gap_terms(X, W, res.S, lam)
        gaps = _relative_gap(P, gap)
    return LassoResult(S=res.S, gap=gaps, n_iter=res.n_iter, converged=gaps <= tol)
