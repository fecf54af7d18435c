r"""The Lasso homotopy (LARS with drops) for many samples at once, compiled with numba.

For one sample with Gram matrix :math:`G = W^\top W` and correlations :math:`b = W^\top x`, the
codes that minimise :math:`\tfrac12\|x - Ws\|^2 + \mu\|s\|_1` are piecewise linear in
:math:`\mu` (Osborne, Presnell and Turlach 2000; Efron et al. 2004).  Starting from
:math:`\mu_0 = \|b\|_\infty` (where :math:`s = 0`), the path keeps the correlations
:math:`c = b - Gs` of the active atoms A at :math:`\pm\mu` and moves

.. math:: s_A \leftarrow s_A + \gamma\, u, \qquad G_{AA}\, u = \sigma_A,

until an inactive atom's correlation reaches :math:`\pm(\mu - \gamma)` (it joins A) or an
active code reaches zero (it leaves A), or :math:`\mu` reaches its target.  Each event costs
:math:`O(hk + k^2)` for k active atoms with the Cholesky factor of :math:`G_{AA}` grown by
one row per entering atom and rotated back to triangular form (Givens) per leaving one.  At the end the codes on A are solved once more from
:math:`G_{AA} s_A = b_A - \mu\sigma_A` (no drift from the updates).

This is the exact solver behind :func:`lecture_ae.sparse.lasso` on the CPU; the caller
certifies every sample with the duality gap and hands any it cannot certify to the
proximal-gradient path.  Samples run in parallel over ``numba``'s threads.
"""
from __future__ import annotations

import math

import numpy as np
import torch

try:  # numba is a dependency; without it lasso() uses the torch path only
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

__all__ = ["available", "homotopy"]


def available() -> bool:
    return numba is not None


# reassociation and contraction let LLVM vectorise the sums; no assumption about NaN or infinity
_FAST = {"reassoc", "contract", "nsz", "arcp"}

if numba is not None:

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _backward(L, k, t, u):
        """u = L^{-T} t for the first k entries, by rows of L (contiguous); t is overwritten."""
        for i in range(k - 1, -1, -1):
            ui = t[i] / L[i, i]
            u[i] = ui
            for m in range(i):
                t[m] -= L[i, m] * ui

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _one(G, b, mu, s, c, A, sig, inA, skip, L, u, w, t, a, maxk, max_steps):
        """The homotopy for one sample; codes into s (h,), returns the number of events."""
        h = b.shape[0]
        big = 0.0
        j0 = -1
        for j in range(h):
            s[j] = 0.0
            c[j] = b[j]
            inA[j] = False
            skip[j] = False
            if abs(b[j]) > big and G[j, j] > 0.0:
                big = abs(b[j])
                j0 = j
        if j0 < 0 or big <= mu:
            return 0
        lam = big
        A[0] = j0
        sig[0] = 1.0 if c[j0] > 0 else -1.0
        inA[j0] = True
        L[0, 0] = math.sqrt(G[j0, j0])
        k = 1
        steps = 0
        dropped = -1
        nw = 0  # rows of w = L^{-1} sigma_A that are up to date
        while steps < max_steps:
            steps += 1
            # u = G_AA^{-1} sigma_A: L w = sigma_A (only the rows of L that changed since the last step), L^T u = w
            for i in range(nw, k):
                v = sig[i]
                for m in range(i):
                    v -= L[i, m] * w[m]
                w[i] = v / L[i, i]
            nw = k
            for i in range(k):
                t[i] = w[i]
            _backward(L, k, t, u)
            for j in range(h):
                a[j] = 0.0
            for i in range(k):
                ui = u[i]
                row = A[i]
                for j in range(h):
                    a[j] += ui * G[row, j]
            gamma = lam - mu
            event = 0
            who = -1
            if dropped >= 0:
                skip[dropped] = True  # the atom that just left cannot re-enter at the same point
            for j in range(h):  # the first inactive atom to reach +-(lam - gamma); a division only for a new best
                if inA[j] or skip[j]:
                    continue
                cj = c[j]
                aj = a[j]
                num = lam - cj
                den = 1.0 - aj
                if den > 0.0 and num > 0.0 and num < gamma * den:
                    gamma = num / den
                    event = 1
                    who = j
                num = lam + cj
                den = 1.0 + aj
                if den > 0.0 and num > 0.0 and num < gamma * den:
                    gamma = num / den
                    event = 1
                    who = j
            if dropped >= 0:
                skip[dropped] = False
            for i in range(k):
                if u[i] != 0.0:
                    g = -s[A[i]] / u[i]
                    if 0.0 < g < gamma:
                        gamma = g
                        event = 2
                        who = i
            for i in range(k):
                s[A[i]] += gamma * u[i]
            for j in range(h):
                c[j] -= gamma * a[j]
            lam -= gamma
            dropped = -1
            if event == 0:
                break
            if event == 1:
                if k >= maxk:
                    break
                # one more row of the Cholesky factor
                d2 = G[who, who]
                for i in range(k):
                    v = G[A[i], who]
                    for m in range(i):
                        v -= L[i, m] * L[k, m]
                    v /= L[i, i]
                    L[k, i] = v
                    d2 -= v * v
                if d2 <= 1e-11 * G[who, who]:  # (nearly) in the span of A: leave it to the caller's check
                    skip[who] = True
                    continue
                L[k, k] = math.sqrt(d2)
                A[k] = who
                sig[k] = 1.0 if c[who] > 0 else -1.0
                inA[who] = True
                k += 1
            else:
                j = A[who]
                s[j] = 0.0
                inA[j] = False
                dropped = j
                for i in range(who, k - 1):
                    A[i] = A[i + 1]
                    sig[i] = sig[i + 1]
                # the Cholesky factor without row/column `who`: delete the row, rotate the columns back to triangular
                for i in range(who, k - 1):
                    for m in range(k):
                        L[i, m] = L[i + 1, m]
                for jj in range(who, k - 1):
                    x = L[jj, jj]
                    y = L[jj, jj + 1]
                    r = math.sqrt(x * x + y * y)
                    cs = x / r
                    sn = y / r
                    for i in range(jj, k - 1):
                        x = L[i, jj]
                        y = L[i, jj + 1]
                        L[i, jj] = cs * x + sn * y
                        L[i, jj + 1] = cs * y - sn * x
                k -= 1
                nw = who  # rows of L above the one removed are unchanged
                if k == 0:
                    return steps
        # the codes on A once more from the optimality conditions (no drift from the updates)
        for i in range(k):
            v = b[A[i]] - mu * sig[i]
            for m in range(i):
                v -= L[i, m] * w[m]
            w[i] = v / L[i, i]
        _backward(L, k, w, u)
        for i in range(k):
            s[A[i]] = u[i]
        return steps

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _gap(G, b, xx, mu, s, c):
        """Primal value P and duality gap of the lecture's objective ||x - Ws||^2 + 2 mu ||s||_1 (Gram form)."""
        h = b.shape[0]
        for j in range(h):
            c[j] = b[j]
        sb = 0.0
        l1 = 0.0
        for i in range(h):
            si = s[i]
            if si != 0.0:
                sb += si * b[i]
                l1 += abs(si)
                for j in range(h):
                    c[j] -= si * G[i, j]
        sc = 0.0
        cmax = 0.0
        for j in range(h):
            sc += s[j] * c[j]
            if abs(c[j]) > cmax:
                cmax = abs(c[j])
        rr = max(xx - sb - sc, 0.0)  # ||x - W s||^2
        P = rr + 2.0 * mu * l1
        alpha = mu / cmax if cmax > mu else 1.0  # the dual point alpha r, scaled into ||W^T theta||_inf <= mu
        D = 2.0 * alpha * (xx - sb) - alpha * alpha * rr
        return P, max(P - D, 0.0)

    @njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
    def _many(G, B, xx, mu, S, steps, P, gap, chunk, maxk, max_steps):
        n, h = B.shape
        n_chunks = (n + chunk - 1) // chunk
        for q in prange(n_chunks):
            c = np.empty(h)
            A = np.empty(h, dtype=np.int64)
            sig = np.empty(h)
            inA = np.empty(h, dtype=np.bool_)
            skip = np.empty(h, dtype=np.bool_)
            L = np.zeros((maxk + 1, maxk + 1))
            u = np.empty(h)
            w = np.empty(h)
            t = np.empty(h)
            a = np.empty(h)
            for i in range(q * chunk, min(n, (q + 1) * chunk)):
                steps[i] = _one(G, B[i], mu, S[i], c, A, sig, inA, skip, L, u, w, t, a, maxk, max_steps)
                P[i], gap[i] = _gap(G, B[i], xx[i], mu, S[i], c)


def homotopy(G: np.ndarray, B: np.ndarray, xx: np.ndarray, mu: float, *, max_steps: int | None = None,
             threads: int = 1):
    r"""Codes S (n, h) for all rows of B (n, h) = X W, the Gram matrix G (h, h) and xx (n,) = ||x||^2, float64.

    Returns S, the events per row, and per row the primal value P and the duality gap of the lecture's
    :math:`\|x - Ws\|^2 + 2\mu\|s\|_1` (computed from G, B and xx, as in :func:`~lecture_ae.sparse.l1_duality_gap`).
    """
    if numba is None:  # pragma: no cover
        raise RuntimeError("numba is not installed")
    G = np.ascontiguousarray(G, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    xx = np.ascontiguousarray(xx, dtype=np.float64)
    n, h = B.shape
    S = np.zeros((n, h))
    steps = np.zeros(n, dtype=np.int64)
    P = np.zeros(n)
    gap = np.zeros(n)
    if n == 0 or h == 0:
        return S, steps, xx.copy(), gap
    maxk = h
    max_steps = 8 * h + 16 if max_steps is None else int(max_steps)
    threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    # numba's OpenMP layer and torch share one OpenMP runtime: numba.set_num_threads sets torch's thread
    # count too (seen: torch.set_num_threads(1), then a call here left torch at 2), so both are put back
    old, old_torch = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(threads)
    try:
        chunk = max(16, min(512, n // (4 * threads) + 1))
        _many(G, B, xx, float(mu), S, steps, P, gap, chunk, maxk, max_steps)
    finally:
        numba.set_num_threads(old)
        if torch.get_num_threads() != old_torch:
            torch.set_num_threads(old_torch)
    return S, steps, P, gap
