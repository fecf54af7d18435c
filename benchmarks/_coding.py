"""Patch coding for a fixed dictionary: time to a relative objective error and to the exact support.

Shared by ``dl_vs_spams.py`` and ``sparse_vs_sklearn.py`` (``run_all.py`` skips ``_*.py``).

Problem: N mean-removed 8x8 patches of a bundled photograph (``data.image_patches``), h unit
atoms drawn from other patches of it (``sparse.init_dictionary``, distinct rows), the lecture's

    E_1 = 1/N sum_i ||x_i - W s_i||^2 + lam ||s_i||_1        (``sparse.l1_objective``)

in float64.  The others minimise 1/2 ||x - W s||^2 + a ||s||_1: a = lam / 2 for all of them
(SPAMS ``lasso`` lambda1 with lambda2 = 0, scikit-learn ``sparse_encode`` alpha, celer ``Lasso``
alpha = lam / (2 d) because celer divides the squared error by the number of rows d).

E* is the best objective anybody reaches (our certified codes: relative duality gap <= 1e-10
per sample).  For each library and each relative tolerance eps we report the shortest time of a
run whose objective is <= E* (1 + eps): a run with its own stopping parameter (FISTA iterations,
scikit-learn's / celer's tol) chosen on a grid, best of ``repeat`` runs, interleaved.  "exact
support" = the set of non-zero codes of every sample equals that of E*'s codes.  SPAMS' LARS is
exact: one run for every tolerance.  celer has no batch interface: it is run in a loop over a
subset of ``celer_n`` samples and its time scaled by N / celer_n (said so in the table).

``isolate=True`` (the default) times every library in a fresh process of its own (``spawn``; the
same threads), best of ``repeat`` runs there (so ``repeat`` >= 2 leaves out each library's
first-call costs in a new process): in one process, a call of SPAMS made our numba
kernel about 1.8x slower for the rest of the process (measured 2026-12-03, when the kernel still ran
in numba's OpenMP loop, which shares an OpenMP runtime with torch and spins between loops; it now runs
in Python threads), so interleaving in one process measured the order of the calls as much as the solvers.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from lecture_ae import sparse as sp

TOLS = (1e-2, 1e-4, 1e-6)


def solvers(X, W, lam, threads, celer_n):
    """name -> list of (label, callable returning S (N, h) float64 torch) from fast/loose to slow/tight."""
    Xn, Dn = X.numpy(), np.ascontiguousarray(W.T.numpy())
    out = {}
    out["ours: sparse.lasso (certified)"] = [
        (f"tol={t:g}", lambda t=t: sp.lasso(X, W, lam, tol=t).S) for t in (1e-2, 1e-4, 1e-6, 1e-10)]
    out["ours: sparse.fista (restart, gap tol)"] = [
        (f"tol={t:g}", lambda t=t: sp.fista(X, W, lam, n_iter=20000, tol=t)) for t in (1e-2, 1e-4, 1e-6)]
    try:
        import spams  # bench extra

        Xf, Df = np.asfortranarray(Xn.T), np.asfortranarray(W.numpy())
        out["SPAMS lasso (LARS)"] = [("exact", lambda: torch.from_numpy(
            spams.lasso(Xf, D=Df, lambda1=lam / 2, lambda2=0.0, mode=2, numThreads=threads).toarray().T))]
    except ImportError:
        pass
    from sklearn.decomposition import sparse_encode

    def skl(algo, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.as_tensor(sparse_encode(Xn, Dn, algorithm=algo, alpha=lam / 2, n_jobs=threads, **kw))

    out["scikit-learn lasso_lars"] = [("exact", lambda: skl("lasso_lars"))]
    out["scikit-learn lasso_cd"] = [(f"max_iter={m}", lambda m=m: skl("lasso_cd", max_iter=m))
                                    for m in (5, 20, 100, 1000)]
    try:
        from celer import Lasso

        n = min(celer_n, X.shape[0])

        def celer_run(tol):
            S = torch.zeros(X.shape[0], W.shape[1], dtype=torch.float64)
            m = Lasso(alpha=lam / (2 * X.shape[1]), fit_intercept=False, tol=tol, warm_start=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for i in range(n):
                    S[i] = torch.as_tensor(m.fit(W.numpy(), Xn[i]).coef_)
            return S

        out[f"celer Lasso (loop over {n} samples, time x {X.shape[0] / n:g})"] = [
            (f"tol={t:g}", lambda t=t: celer_run(t)) for t in (1e-2, 1e-4, 1e-8)]
    except ImportError:
        pass
    return out


def _best_times(runs, repeat):
    """{name: [(label, best-of-``repeat`` seconds, codes of the first run)]}, every setting once per round."""
    out = {name: [[label, float("inf"), None] for label, _ in settings] for name, settings in runs.items()}
    for _ in range(repeat):  # interleaved: every solver once per round
        for name, settings in runs.items():
            for entry, (_, fn) in zip(out[name], settings):
                t0 = time.perf_counter()
                S = fn()
                entry[1] = min(entry[1], time.perf_counter() - t0)
                entry[2] = S if entry[2] is None else entry[2]
    return {name: [tuple(e) for e in entries] for name, entries in out.items()}


def _time_family(name, X, W, lam, threads, celer_n, repeat):
    """In a fresh process: :func:`_best_times` of solver ``name``, with ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        return _best_times({name: solvers(X, W, lam, threads, celer_n)[name]}, repeat)[name]


def _isolated(names, X, W, lam, threads, celer_n, repeat):
    """:func:`_best_times` of every solver in ``names``, each timed in a process of its own."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    out = {}
    for name in names:  # one after the other: each process has the machine to itself
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            out[name] = pool.submit(_time_family, name, X, W, lam, threads, celer_n, repeat).result()
    return out


def bench(X, W, lam, *, threads=1, repeat=3, celer_n=300, isolate=True):
    """Rows of the table: for every solver the time to each tolerance and to the exact support."""
    ref = sp.lasso(X, W, lam, tol=1e-10)
    S_ref = ref.S
    E_star = float(sp.l1_objective(X, W, S_ref, lam))
    supp = S_ref != 0
    table = {}
    runs = solvers(X, W, lam, threads, celer_n)
    timings = _isolated(list(runs), X, W, lam, threads, celer_n, repeat) if isolate else _best_times(runs, repeat)
    measured = {}
    for name, rows in timings.items():
        n = celer_n if name.startswith("celer") else X.shape[0]  # celer codes the first n samples only
        E_ref = float(sp.l1_objective(X[:n], W, S_ref[:n], lam))
        measured[name] = []
        for label, t, S in rows:
            E = float(sp.l1_objective(X[:n], W, S[:n], lam))
            measured[name].append({"label": label, "t": t * (X.shape[0] / n), "rel": (E - E_ref) / E_ref,
                                   "support": bool(torch.equal(S[:n] != 0, supp[:n]))})
    for name, pts in measured.items():
        row = {}
        for eps in TOLS:
            hit = [p for p in pts if p["rel"] <= eps]
            row[f"{eps:g}"] = min(hit, key=lambda p: p["t"]) if hit else None
        hit = [p for p in pts if p["support"]]
        row["exact support"] = min(hit, key=lambda p: p["t"]) if hit else None
        table[name] = row
    return E_star, table, measured


def print_table(title, E_star, table):
    cols = [f"{eps:g}" for eps in TOLS] + ["exact support"]
    print(f"\n## {title}\nE* = {E_star:.10f} (ours, certified to a relative gap of 1e-10); seconds to reach "
          "E_1 <= E* (1 + eps), best of the runs; in brackets the setting that got there")
    ours = [n for n in table if n.startswith("ours")]
    peers = [n for n in table if not n.startswith("ours")]
    width = max(len(n) for n in table)
    print("solver".ljust(width) + "".join(f"  {c:>24}" for c in cols))
    for name, row in table.items():
        cells = []
        for c in cols:
            p = row[c]
            cells.append("not reached".rjust(24) if p is None else f"{p['t']:.3f} s ({p['label']})".rjust(24))
        print(name.ljust(width) + "".join("  " + x for x in cells))
    best_ours = {c: min((table[n][c]["t"] for n in ours if table[n][c]), default=None) for c in cols}
    best_peer = {c: min((table[n][c]["t"] for n in peers if table[n][c]), default=None) for c in cols}
    line = []
    for c in cols:
        if best_ours[c] and best_peer[c]:
            line.append(f"{best_peer[c] / best_ours[c]:.2f}x".rjust(24))
        else:
            line.append("-".rjust(24))
    print("fastest peer / ours".ljust(width) + "".join("  " + x for x in line) + "   (> 1: ours is faster; goal >= 3)")
    return {c: (best_peer[c] / best_ours[c] if best_ours[c] and best_peer[c] else None) for c in cols}
