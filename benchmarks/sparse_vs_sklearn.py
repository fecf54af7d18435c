"""FISTA and dictionary learning against scikit-learn: time to the same objective.

Run: ``.venv/bin/python benchmarks/sparse_vs_sklearn.py`` (or ``make bench``).
Not a test: the numbers depend on the machine; all of them are measured in one run.

1. Codes for a fixed dictionary.  scikit-learn's ``sparse_encode`` minimises
   1/2 ||x - s D||^2 + alpha ||s||_1, which is our E_1 / 2 with alpha = lam / 2.
   Each scikit-learn algorithm runs once; we then time FISTA with just enough
   iterations to reach the objective scikit-learn reached (and report both).
   The dictionary is a realistic one: unit-norm atoms learned on the same patches.
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

from _common import best_time as _time, table as _table  # benchmarks/_common.py
from lecture_ae import sparse as sp
from lecture_ae.data import image_patches


def _learned_dictionary(X, h, lam):
    res = sp.online_dictionary_learning(X, h, lam, 0.0, n_steps=100, batch_size=256, encoder_iter=30,
                                        eval_every=100, eval_encoder_iter=1, unit_norm=True, seed=0,
                                        show_progress=False)
    return res.W


def bench_encoding(X, W, lam, threads, device):
    Xn, Dn = X.double().numpy(), W.T.double().numpy()
    Xd, Wd = X.to(device), W.to(device)
    _, hist = sp.fista(Xd, Wd, lam, n_iter=3000, history=True)
    best = min(hist)
    rows = []
    for algo in ("lasso_lars", "lasso_cd"):
        t_skl, S_skl = _time(lambda: sparse_encode(Xn, Dn, algorithm=algo, alpha=lam / 2, n_jobs=threads), repeat=1)
        target = float(sp.l1_objective(X.double(), W.double(), torch.as_tensor(S_skl), lam))
        k = next((i + 1 for i, v in enumerate(hist) if v <= target), None)
        if k is None:
            rows.append({"scikit-learn": algo, "sklearn objective": f"{target:.7f}", "sklearn [s]": f"{t_skl:.3f}",
                         "FISTA iterations": "not reached in 3000", "FISTA objective": f"{best:.7f}",
                         "FISTA [s]": "-", "speed-up": "-"})
            continue
        t_ours, S = _time(lambda: _sync(sp.fista(Xd, Wd, lam, n_iter=k)))
        ours = float(sp.l1_objective(X.double(), W.double(), S.double().cpu(), lam))
        rows.append({
            "scikit-learn": algo, "sklearn objective": f"{target:.7f}", "sklearn [s]": f"{t_skl:.3f}",
            "FISTA iterations": k, "FISTA objective": f"{ours:.7f}", "FISTA [s]": f"{t_ours:.3f}",
            "speed-up": f"{t_skl / t_ours:.1f}x",
        })
    for rel in (1e-3, 1e-4, 1e-5):
        k = next((i + 1 for i, v in enumerate(hist) if v <= best * (1 + rel)), None)
        t_ours, _ = _time(lambda: _sync(sp.fista(Xd, Wd, lam, n_iter=k)))
        rows.append({"scikit-learn": f"(FISTA to {rel:g} of its best)", "sklearn objective": "-", "sklearn [s]": "-",
                     "FISTA iterations": k, "FISTA objective": f"{hist[k - 1]:.7f}", "FISTA [s]": f"{t_ours:.3f}",
                     "speed-up": "-"})
    print(f"\n## Codes: N = {X.shape[0]} patches 8x8, h = {W.shape[1]} learned unit-norm atoms, lambda = {lam}, "
          f"torch {X.dtype} on {device}, scikit-learn float64 with n_jobs={threads}")
    _table(rows, list(rows[0]))
    return rows


def _sync(out):
    if isinstance(out, torch.Tensor) and out.device.type == "cuda":
        torch.cuda.synchronize()
    return out


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
