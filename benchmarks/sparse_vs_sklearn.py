"""FISTA and dictionary learning against scikit-learn: time to the same objective.

Run: ``.venv/bin/python benchmarks/sparse_vs_sklearn.py`` (or ``make bench``).
Not a test: the numbers depend on the machine; all of them are measured in one run.

1. Codes for a fixed dictionary.  scikit-learn's ``sparse_encode`` minimises
   1/2 ||x - s D||^2 + alpha ||s||_1, which is our E_1 / 2 with alpha = lam / 2.
   Time to a relative objective error of 1e-2, 1e-4, 1e-6 and to the exact support for
   ours (``sparse.lasso``, ``sparse.fista``), scikit-learn's lasso_lars and lasso_cd, and
   SPAMS and celer when installed (``_coding.py`` says how).  The dictionary is a
   realistic one: unit-norm atoms learned on the same patches.
2. Dictionary learning.  scikit-learn's ``MiniBatchDictionaryLearning`` constrains
   atoms to unit norm; so does our online algorithm with ``unit_norm=True`` (the
   lecture's eta-penalised version optimises another objective and is not compared).
   Both are judged by the same number: E_1 of all patches coded with the learned
   dictionary (FISTA, 300 iterations).  We report the time our algorithm needs to
   reach the objective scikit-learn reaches.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.decomposition import MiniBatchDictionaryLearning, sparse_encode

import _coding  # benchmarks/_coding.py
from _common import table as _table  # benchmarks/_common.py
from lecture_ae import sparse as sp
from lecture_ae.data import image_patches


def _learned_dictionary(X, h, lam):
    res = sp.online_dictionary_learning(X, h, lam, 0.0, n_steps=100, batch_size=256, encoder_iter=30,
                                        eval_every=100, eval_encoder_iter=1, unit_norm=True, seed=0,
                                        show_progress=False)
    return res.W


def bench_encoding(X, W, lam, threads, device):
    """Time to 1e-2 / 1e-4 / 1e-6 of the optimum and to the exact support, ours against scikit-learn
    (lasso_lars, lasso_cd), SPAMS and celer when installed: the table of ``_coding.py``."""
    E_star, table, _ = _coding.bench(X.double().cpu(), W.double().cpu(), lam, threads=threads, repeat=3)
    _coding.print_table(f"Codes: N = {X.shape[0]} patches 8x8, h = {W.shape[1]} learned unit-norm atoms, "
                        f"lambda = {lam}, float64, {threads} thread(s)", E_star, table)
    return table


def _criterion(X, W, lam):
    S = sp.fista(X, W, lam, n_iter=300)
    return float(sp.l1_objective(X, W, S, lam))


def bench_dictionary(X, h, lam, threads, device, epochs):
    Xn = X.double().numpy()
    t0 = time.perf_counter()
    mbdl = MiniBatchDictionaryLearning(n_components=h, alpha=lam / 2, batch_size=256, max_iter=epochs,
                                       random_state=0, n_jobs=threads)
    mbdl.fit(Xn)
    t_skl = time.perf_counter() - t0
    target = _criterion(X, torch.as_tensor(mbdl.components_.T, dtype=X.dtype), lam)
    rows = [{"algorithm": f"sklearn MiniBatchDictionaryLearning ({epochs} epochs)", "objective E_1": f"{target:.5f}",
             "seconds": f"{t_skl:.2f}", "speed-up": "1.0x"}]
    steps_per_epoch = max(1, X.shape[0] // 256)
    for steps in (steps_per_epoch // 4, steps_per_epoch // 2, steps_per_epoch, 2 * steps_per_epoch,
                  4 * steps_per_epoch, 8 * steps_per_epoch):
        steps = max(steps, 1)
        res = sp.online_dictionary_learning(X.to(device), h, lam, 0.0, n_steps=steps, batch_size=256,
                                            encoder_iter=30, eval_every=steps, eval_encoder_iter=1, unit_norm=True,
                                            seed=0, show_progress=False)
        reached = _criterion(X, res.W.cpu(), lam)
        secs = res.seconds[-1]
        if reached <= target:
            break
    rows.append({"algorithm": f"ours, online, unit-norm atoms ({steps} steps of 256)", "objective E_1": f"{reached:.5f}",
                 "seconds": f"{secs:.2f}",
                 "speed-up": f"{t_skl / secs:.1f}x" + ("" if reached <= target else " (did not reach)")})
    print(f"\n## Dictionary: N = {X.shape[0]} patches, h = {h}, lambda = {lam}; same objective E_1 for both, "
          f"torch on {device}")
    _table(rows, list(rows[0]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--h", type=int, default=100)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=3, help="scikit-learn's MiniBatchDictionaryLearning max_iter")
    ap.add_argument("--device", default="cpu", help="torch device for our side (cpu, cuda)")
    ap.add_argument("--float64", action="store_true", help="run torch in float64 (default float32)")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    dtype = torch.float64 if args.float64 else torch.float32
    print(f"torch {torch.__version__}, {threads} threads, numpy {np.__version__}")
    X = image_patches("camera", n=args.n, seed=0, dtype=dtype)
    W = _learned_dictionary(X, args.h, args.lam)
    bench_encoding(X, W, args.lam, threads, args.device)
    bench_dictionary(X, args.h, args.lam, threads, args.device, args.epochs)


if __name__ == "__main__":
    main()
