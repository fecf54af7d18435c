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
proximal-gradient path.  Blocks of samples run side by side in Python threads (the compiled loop
releases the GIL).

What the loop does for speed (each measured on 10,000 camera patches, h = 100 and 256, lam 0.1 and
0.5, one thread; profiled with ``perf`` on the compiled code, 2026-12-04):

* the step to the next entering atom is computed for every atom without a branch and then reduced
  (the compiler vectorises it; 1.25-1.45x over a scan that divides only for a new best), with one
  division per atom, not two: for an atom inside the tube (|c_j| < lam, both denominators
  positive) the upper crossing (lam - c_j)/(1 - a_j) comes first exactly when c_j > lam a_j, so only
  that one is divided (the divisions were half of the scan's time);
* the least step is taken over eight independent running minima (one chain of dependent compares
  waited on each one's latency: 14% of the time at h = 256), and the leaving test runs over the
  active codes kept contiguous in the order of A, branch-free;
* the triangular solves and the new Cholesky row multiply by the stored reciprocals of the
  diagonal (no division on their dependency chains);
* a = G[:, A] u is accumulated eight rows of G per pass (a loaded and stored once per eight rows)
  into one of two buffers, and the last row's pass also applies the previous step's update of c (with
  the previous direction, kept in the other buffer) and computes every atom's entering step: one pass
  over the atoms fewer per event (4-8% at h = 256, 2026-12-05);
* with small supports the per-sample passes count: the first atom is found by a vectorised
  reduction (not a scan with a branch per atom), and the certificate works on the final support
  (s.c over it, c updated by its rows only) with max |c_j| in four lanes (1.1-1.2x more at lam = 0.5).

Everything but the first item (2026-12-04 evening) made the kernel 1.45-1.6x faster than with two
divisions per atom, one chain of minima and four rows per pass (camera: 182 -> 125, 29.0 -> 19.7,
470 -> 322, 79.3 -> 50.2 ms; brick: 57.5 -> 37.6, 14.1 -> 9.8, 130 -> 81, 36.4 -> 22.7 ms for
(h, lam) = (100, 0.1), (100, 0.5), (256, 0.1), (256, 0.5)), with the same codes to 1e-12.  A fused
minimum-and-index pass (eight lanes carrying their indices) was measured too and was 2-4% slower
than the minimum and then the scan for its first index.  Ties (atoms whose correlations reach the
bound at the same point, at the start or on the way) enter with a zero step, so the kernel certifies
those samples itself.
"""
from __future__ import annotations

import math

import numpy as np

try:  # numba is a dependency; without it lasso() uses the torch path only
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

__all__ = ["available", "homotopy"]


def available() -> bool:
    return numba is not None


# reassociation and contraction let LLVM vectorise the sums; no assumption about NaN or infinity
_FAST = {"reassoc", "contract", "nsz", "arcp"}

if numba is not None:

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _backward(L, rd, k, t, u):
        """u = L^{-T} t for the first k entries, by rows of L (contiguous; rd = 1 / diag(L)); t is overwritten."""
        for i in range(k - 1, -1, -1):
            ui = t[i] * rd[i]
            u[i] = ui
            for m in range(i):
                t[m] -= L[i, m] * ui

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _least(t, n, start):
        """min(start, t[0], ..., t[n-1]) in eight independent running minima (one chain of n dependent
        compares would wait on each one's latency; the compiler packs the eight into vector minima)."""
        m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = start
        j = 0
        while j + 8 <= n:
            x0 = t[j]
            x1 = t[j + 1]
            x2 = t[j + 2]
            x3 = t[j + 3]
            x4 = t[j + 4]
            x5 = t[j + 5]
            x6 = t[j + 6]
            x7 = t[j + 7]
            m0 = x0 if x0 < m0 else m0
            m1 = x1 if x1 < m1 else m1
            m2 = x2 if x2 < m2 else m2
            m3 = x3 if x3 < m3 else m3
            m4 = x4 if x4 < m4 else m4
            m5 = x5 if x5 < m5 else m5
            m6 = x6 if x6 < m6 else m6
            m7 = x7 if x7 < m7 else m7
            j += 8
        while j < n:
            x0 = t[j]
            m0 = x0 if x0 < m0 else m0
            j += 1
        m0 = m1 if m1 < m0 else m0
        m2 = m3 if m3 < m2 else m2
        m4 = m5 if m5 < m4 else m4
        m6 = m7 if m7 < m6 else m6
        m0 = m2 if m2 < m0 else m0
        m4 = m6 if m6 < m4 else m4
        return m4 if m4 < m0 else m0

    @njit(cache=True, nogil=True)
    def _first(t, n, value):
        """The first j < n with t[j] == value (there is one)."""
        for j in range(n):
            if t[j] == value:
                return j
        return -1

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _scan(G, row, ui, keep, c, ao, an, blk, t, gprev, lam, big_g):
        """One pass over the atoms: an = keep * an + ui G[row] (the direction's last row), c -= gprev ao (the last
        step's update, with its direction ao), and t = every atom's step to the bound (gamma for blocked atoms)."""
        for j in range(c.shape[0]):
            cj = c[j] - gprev * ao[j]
            c[j] = cj
            aj = keep * an[j] + ui * G[row, j]
            an[j] = aj
            d1 = 1.0 - aj
            d2 = 1.0 + aj
            n1 = lam - cj
            n2 = lam + cj
            # with both denominators positive, n1/d1 < n2/d2 exactly when c_j > lam a_j: one division
            up = cj > lam * aj
            num = n1 if up else n2
            den = d1 if up else d2
            g = num / den if (den > 0.0) and (num >= 0.0) else big_g
            t[j] = big_g if blk[j] else g

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _one(G, dg, b, mu, s, c, A, sig, blk, L, rd, sA, u, w, t, ao, an, maxk, max_steps):
        """The homotopy for one sample; codes into s (h,), zero on entry; dg = diag(G); returns the number of events and
        the size k of the final support, which is A[:k] (s is zero elsewhere)."""
        h = b.shape[0]
        for j in range(h):  # (s is zero on entry: the rows of the caller's np.zeros)
            c[j] = b[j]
            blk[j] = False
            t[j] = -abs(b[j]) if dg[j] > 0.0 else 0.0
        big = -_least(t, h, 0.0)  # the first atom: the largest |b_j| (vectorised; the first one at a tie)
        if big <= 0.0 or big <= mu:
            return 0, 0
        j0 = _first(t, h, -big)
        lam = big
        A[0] = j0
        sig[0] = 1.0 if c[j0] > 0 else -1.0
        blk[j0] = True
        L[0, 0] = math.sqrt(G[j0, j0])
        rd[0] = 1.0 / L[0, 0]
        sA[0] = 0.0  # the codes of the active atoms, in the order of A (contiguous for the drop test)
        k = 1
        steps = 0
        dropped = -1
        gprev = 0.0
        for j in range(h):
            ao[j] = 0.0
        nw = 0  # rows of w = L^{-1} sigma_A that are up to date
        while steps < max_steps:
            steps += 1
            # u = G_AA^{-1} sigma_A: L w = sigma_A (only the rows of L that changed since the last step), L^T u = w
            for i in range(nw, k):
                v = sig[i]
                for m in range(i):
                    v -= L[i, m] * w[m]
                w[i] = v * rd[i]
            nw = k
            for i in range(k):
                t[i] = w[i]
            _backward(L, rd, k, t, u)
            # a = G[:, A] u into an: rows 0..k-2 first, then one pass that adds the last row, applies the last
            # step's update of c (with the previous direction ao) and computes every atom's entering step
            gamma = lam - mu
            big_g = gamma
            if k > 1:
                ui = u[0]
                row = A[0]
                for j in range(h):
                    an[j] = ui * G[row, j]
                i = 1
                while i + 7 < k - 1:
                    u1 = u[i]
                    u2 = u[i + 1]
                    u3 = u[i + 2]
                    u4 = u[i + 3]
                    u5 = u[i + 4]
                    u6 = u[i + 5]
                    u7 = u[i + 6]
                    u8 = u[i + 7]
                    r1 = A[i]
                    r2 = A[i + 1]
                    r3 = A[i + 2]
                    r4 = A[i + 3]
                    r5 = A[i + 4]
                    r6 = A[i + 5]
                    r7 = A[i + 6]
                    r8 = A[i + 7]
                    for j in range(h):
                        an[j] += ((u1 * G[r1, j] + u2 * G[r2, j]) + (u3 * G[r3, j] + u4 * G[r4, j])) + \
                            ((u5 * G[r5, j] + u6 * G[r6, j]) + (u7 * G[r7, j] + u8 * G[r8, j]))
                    i += 8
                while i + 3 < k - 1:
                    u1 = u[i]
                    u2 = u[i + 1]
                    u3 = u[i + 2]
                    u4 = u[i + 3]
                    r1 = A[i]
                    r2 = A[i + 1]
                    r3 = A[i + 2]
                    r4 = A[i + 3]
                    for j in range(h):
                        an[j] += (u1 * G[r1, j] + u2 * G[r2, j]) + (u3 * G[r3, j] + u4 * G[r4, j])
                    i += 4
                while i + 1 < k - 1:
                    u1 = u[i]
                    u2 = u[i + 1]
                    r1 = A[i]
                    r2 = A[i + 1]
                    for j in range(h):
                        an[j] += u1 * G[r1, j] + u2 * G[r2, j]
                    i += 2
                if i < k - 1:
                    ui = u[i]
                    row = A[i]
                    for j in range(h):
                        an[j] += ui * G[row, j]
            _scan(G, A[k - 1], u[k - 1], 1.0 if k > 1 else 0.0, c, ao, an, blk, t, gprev, lam, big_g)
            ao, an = an, ao  # ao: this step's direction
            event = 0
            who = -1
            gmin = _least(t, h, big_g)
            if gmin < gamma:
                gamma = gmin
                event = 1
                who = _first(t, h, gmin)
            if dropped >= 0:
                blk[dropped] = False  # the atom that left at the last step could not re-enter at the same point
            for i in range(k):  # every active code's step to zero, branch-free; the others get gamma
                ui = u[i]
                g = -sA[i] / ui if ui != 0.0 else gamma
                t[i] = g if 0.0 < g else gamma
            gd = _least(t, k, gamma)
            if gd < gamma:
                gamma = gd
                event = 2
                who = _first(t, k, gd)
            for i in range(k):
                sA[i] += gamma * u[i]
            gprev = gamma
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
                    v *= rd[i]
                    L[k, i] = v
                    d2 -= v * v
                if d2 <= 1e-11 * G[who, who]:  # (nearly) in the span of A: leave it to the caller's check
                    blk[who] = True
                    continue
                L[k, k] = math.sqrt(d2)
                rd[k] = 1.0 / L[k, k]
                sA[k] = 0.0
                A[k] = who
                sig[k] = 1.0 if c[who] - gprev * ao[who] > 0 else -1.0
                blk[who] = True
                k += 1
            else:
                j = A[who]
                dropped = j  # blk[j] stays True for one step
                for i in range(who, k - 1):
                    A[i] = A[i + 1]
                    sig[i] = sig[i + 1]
                    sA[i] = sA[i + 1]
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
                for i in range(who, k - 1):
                    rd[i] = 1.0 / L[i, i]
                k -= 1
                nw = who  # rows of L above the one removed are unchanged
                if k == 0:
                    return steps, 0
        # the codes on A once more from the optimality conditions (no drift from the updates)
        for i in range(k):
            v = b[A[i]] - mu * sig[i]
            for m in range(i):
                v -= L[i, m] * w[m]
            w[i] = v * rd[i]
        _backward(L, rd, k, w, u)
        for i in range(k):
            s[A[i]] = u[i]
        return steps, k

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _gap(G, b, xx, mu, s, c, A, k):
        """Primal value P and duality gap of the lecture's objective ||x - Ws||^2 + 2 mu ||s||_1 (Gram form),
        for codes s that are zero off A[:k]."""
        h = b.shape[0]
        for j in range(h):
            c[j] = b[j]
        sb = 0.0
        l1 = 0.0
        for q in range(k):
            i = A[q]
            si = s[i]
            if si != 0.0:
                sb += si * b[i]
                l1 += abs(si)
                for j in range(h):
                    c[j] -= si * G[i, j]
        sc = 0.0
        for q in range(k):  # s.c over the support (s is zero elsewhere)
            sc += s[A[q]] * c[A[q]]
        # max |c_j| in four running maxima (one chain of compares waits on each one's latency)
        m0 = m1 = m2 = m3 = 0.0
        j = 0
        while j + 4 <= h:
            x0 = abs(c[j])
            x1 = abs(c[j + 1])
            x2 = abs(c[j + 2])
            x3 = abs(c[j + 3])
            m0 = x0 if x0 > m0 else m0
            m1 = x1 if x1 > m1 else m1
            m2 = x2 if x2 > m2 else m2
            m3 = x3 if x3 > m3 else m3
            j += 4
        while j < h:
            x0 = abs(c[j])
            m0 = x0 if x0 > m0 else m0
            j += 1
        m0 = m1 if m1 > m0 else m0
        m2 = m3 if m3 > m2 else m2
        cmax = m2 if m2 > m0 else m0
        rr = max(xx - sb - sc, 0.0)  # ||x - W s||^2
        P = rr + 2.0 * mu * l1
        alpha = mu / cmax if cmax > mu else 1.0  # the dual point alpha r, scaled into ||W^T theta||_inf <= mu
        D = 2.0 * alpha * (xx - sb) - alpha * alpha * rr
        return P, max(P - D, 0.0)

    @njit(cache=True, nogil=True, fastmath=_FAST)
    def _rows(G, B, xx, mu, S, steps, P, gap, lo, hi, maxk, max_steps):
        """Rows lo..hi-1, in the calling thread (nogil: the callers' threads run blocks side by side)."""
        h = B.shape[1]
        c = np.empty(h)
        A = np.empty(h, dtype=np.int64)
        sig = np.empty(h)
        L = np.zeros((maxk + 1, maxk + 1))
        rd = np.empty(maxk + 1)
        sA = np.empty(maxk + 1)
        u = np.empty(h)
        w = np.empty(h)
        t = np.empty(h)
        a = np.zeros(h)
        a2 = np.zeros(h)
        blk = np.empty(h, dtype=np.bool_)
        dg = np.empty(h)
        for j in range(h):
            dg[j] = G[j, j]
        for i in range(lo, hi):
            s = S[i]
            for j in range(h):  # S may come from np.empty (no memset of the whole array before)
                s[j] = 0.0
            steps[i], k = _one(G, dg, B[i], mu, s, c, A, sig, blk, L, rd, sA, u, w, t, a, a2, maxk, max_steps)
            P[i], gap[i] = _gap(G, B[i], xx[i], mu, S[i], c, A, k)


_POOLS: dict = {}


def _pool(threads):
    """One thread pool per thread count, kept for the process (the compiled loop releases the GIL)."""
    if threads not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="lecture_ae-homotopy")
    return _POOLS[threads]


def homotopy(G: np.ndarray, B: np.ndarray, xx: np.ndarray, mu: float, *, max_steps: int | None = None,
             threads: int = 1, S: np.ndarray | None = None):
    r"""Codes S (n, h) for all rows of B (n, h) = X W, the Gram matrix G (h, h) and xx (n,) = ||x||^2, float64.

    Returns S, the events per row, and per row the primal value P and the duality gap of the lecture's
    :math:`\|x - Ws\|^2 + 2\mu\|s\|_1` (computed from G, B and xx, as in :func:`~lecture_ae.sparse.l1_duality_gap`).
    ``S``: an (n, h) C-contiguous float64 array to write the codes into (any content: every row is
    overwritten), else a new one.  ``threads`` > 1 splits the rows into blocks run by that many Python
    threads.  Not numba's own ``parallel``: its OpenMP layer shares torch's OpenMP runtime, so setting its thread count set
    torch's too, and its threads spin after a loop while torch's want the cores (a torch call next
    to it ran up to 20x slower on 2 cores).
    """
    if numba is None:  # pragma: no cover
        raise RuntimeError("numba is not installed")
    G = np.ascontiguousarray(G, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    xx = np.ascontiguousarray(xx, dtype=np.float64)
    n, h = B.shape
    if S is None:
        S = np.empty((n, h))
    elif S.shape != (n, h) or S.dtype != np.float64 or not S.flags.c_contiguous:
        raise ValueError(f"S must be a C-contiguous float64 array of shape {(n, h)}, got {S.dtype} {S.shape}")
    steps = np.zeros(n, dtype=np.int64)
    P = np.zeros(n)
    gap = np.zeros(n)
    if n == 0 or h == 0:
        S[...] = 0.0
        return S, steps, xx.copy(), gap
    maxk = h
    max_steps = 8 * h + 16 if max_steps is None else int(max_steps)
    threads = max(1, min(int(threads), n // 64 + 1))
    args = (G, B, xx, float(mu), S, steps, P, gap)
    if threads == 1:
        _rows(*args, 0, n, maxk, max_steps)
    else:  # blocks of rows, 4 per thread (the rows' costs differ), each block one call of the compiled loop
        edges = np.linspace(0, n, 4 * threads + 1).astype(np.int64)
        futures = [_pool(threads).submit(_rows, *args, int(lo), int(hi), maxk, max_steps)
                   for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
        for f in futures:
            f.result()
    return S, steps, P, gap
