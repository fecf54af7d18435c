"""Patch dictionary learning and sparse coding against SPAMS and scikit-learn: time to the same objective.

Run: ``.venv/bin/python benchmarks/dl_vs_spams.py`` (or ``make bench``; SPAMS is the ``bench``
extra, ``spams-bin``).  Not a test: the numbers depend on the machine; all of them are measured
in one run, with the same number of threads for every library (``--threads``, default 1:
torch's intra-op threads, the BLAS pools via threadpoolctl, SPAMS' ``numThreads``,
scikit-learn's ``n_jobs``).

One objective for everybody: the lecture's

    E_1(W, S) = 1/N sum_i ( ||x_i - W s_i||^2 + lam ||s_i||_1 )      (``sparse.l1_objective``)

with unit-norm atoms ||w_j|| <= 1.  The libraries write the same problem with a factor 1/2:

* SPAMS ``trainDL`` / ``lasso`` (mode=2): 1/2 ||x - D a||^2 + lambda1 ||a||_1, ||d_j|| <= 1
  (modeD=0): ``lambda1 = lam / 2`` (and SPAMS' default ridge lambda2 = 1e-9 on the codes,
  negligible);
* scikit-learn ``MiniBatchDictionaryLearning``: 1/2 ||x - s V||^2 + alpha ||s||_1,
  ||V_k|| <= 1: ``alpha = lam / 2``;
* ours: ``online_dictionary_learning(..., eta=0, unit_norm=True)`` (the lecture's online
  algorithm with the unit-norm constraint instead of the eta penalty, which is another problem).

1. Dictionary learning.  10,000 random 8x8 patches of scikit-image's camera (mean removed,
   ``data.image_patches``), h = 100 atoms, lam = 0.1, the same initial dictionary (random
   patches) for all, mini-batches of 256.  A learned dictionary is judged by
   min_S E_1(W, S) on all the patches, the codes computed exactly by SPAMS' LARS
   (``spams.lasso``, float64) for every dictionary alike.  Each library is run for a grid of
   budgets (mini-batch steps; scikit-learn, far slower, in one run of ``partial_fit`` timed
   step by step and evaluated at checkpoints); for each objective that SPAMS reaches we
   report the shortest run of the others that reaches it.
2. Codes for fixed dictionaries (``_coding.py``): 10,000 camera patches, h = 100 and 256 atoms
   drawn from other patches, lam = 0.1 and 0.5, float64: time to a relative objective error of
   1e-2, 1e-4, 1e-6 and to the exact support for ours (``sparse.lasso``, ``sparse.fista`` with
   the gap stopping rule) against SPAMS ``lasso``, scikit-learn ``lasso_lars`` / ``lasso_cd`` and
   celer (``--images`` adds other photographs; ``--threads 2`` for two threads).
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import spams  # bench extra (pyproject: spams-bin)
from sklearn.decomposition import MiniBatchDictionaryLearning
from threadpoolctl import threadpool_limits

import _coding  # benchmarks/_coding.py
from _common import best_time as _best_time, table as _table  # benchmarks/_common.py
from lecture_ae import sparse as sp
from lecture_ae.data import image_patches


class Problem:
    def __init__(self, args):
        self.args = args
        self.X = image_patches("camera", n=args.n, seed=0, dtype=torch.float32)  # (N, 64)
        self.X64 = self.X.double()
        self.Xf = np.asfortranarray(self.X.numpy().T)  # SPAMS: one sample per column
        self.Xf64 = np.asfortranarray(self.X64.numpy().T)
        self.W0 = sp.init_dictionary(self.X, args.h, seed=0)  # (64, h), unit-norm columns
        self.lam = args.lam

    def exact_codes(self, W, dtype=np.float64):
        Xf = self.Xf64 if dtype == np.float64 else self.Xf
        A = spams.lasso(Xf, D=np.asfortranarray(np.asarray(W, dtype=dtype)), lambda1=self.lam / 2, mode=2,
                        numThreads=self.args.threads)
        return torch.from_numpy(A.toarray().T)

    def criterion(self, W):
        """min_S E_1(W, S) over all patches (codes by LARS, float64), after projecting atoms onto the unit ball."""
        W = torch.as_tensor(np.asarray(W), dtype=torch.float64)
        W = W / torch.linalg.vector_norm(W, dim=0).clamp_min(1.0)
        return float(sp.l1_objective(self.X64, W, self.exact_codes(W.numpy()), self.lam))


# --------------------------------------------------------------------------- dictionary learning
def bench_dictionary(P):
    args, lam, bs = P.args, P.lam, 256
    ours_names = {"fista": f"ours: online, unit-norm atoms ({args.encoder_iter} FISTA steps per batch)",
                  "lasso": "ours: online, unit-norm atoms (exact codes per batch: sparse.lasso)"}
    ours_names = {enc: ours_names[enc] for enc in args.encoders}
    runs = {"SPAMS trainDL": [], **{name: [] for name in ours_names.values()}}
    D0 = np.asfortranarray(P.W0.numpy())
    spams_name = "SPAMS trainDL"

    def spams_run(it):
        return spams.trainDL(P.Xf, D=D0, lambda1=lam / 2, mode=2, iter=it, batchsize=bs, numThreads=args.threads,
                             verbose=False)

    def ours_run(steps, encoder):
        res = sp.online_dictionary_learning(P.X, args.h, lam, 0.0, n_steps=steps, batch_size=bs,
                                            encoder_iter=args.encoder_iter, encoder=encoder, unit_norm=True,
                                            dict_passes=args.dict_passes,
                                            W0=P.W0, eval_every=steps, eval_encoder_iter=1, seed=0,
                                            show_progress=False)
        return res.seconds[-1], res.W.numpy()

    spams_run(2), [ours_run(2, enc) for enc in ours_names]  # warm-up
    for it in args.spams_steps:
        t, D = _best_time(lambda: spams_run(it), args.repeat)
        runs[spams_name].append((it, t, P.criterion(D)))
    for enc, ours_name in ours_names.items():
        for steps in args.ours_steps:
            best_t, W = float("inf"), None
            for _ in range(args.repeat):
                t, W = ours_run(steps, enc)  # seconds of the algorithm's own work (its evaluation excluded)
                best_t = min(best_t, t)
            runs[ours_name].append((steps, best_t, P.criterion(W)))
    skl_name = f"scikit-learn MiniBatchDictionaryLearning (fit_algorithm='{args.sklearn_algorithm}')"
    runs[skl_name] = []
    # one run of partial_fit on shuffled mini-batches (what fit does), timed step by step, evaluated at checkpoints
    m = MiniBatchDictionaryLearning(n_components=args.h, alpha=lam / 2, batch_size=bs, dict_init=P.W0.numpy().T,
                                    fit_algorithm=args.sklearn_algorithm, random_state=0, n_jobs=args.threads)
    Xn = P.X.numpy()
    perm = np.random.default_rng(0).permutation(len(Xn))
    elapsed = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(1, max(args.sklearn_steps) + 1):
            lo = ((step - 1) * bs) % (len(Xn) - bs + 1)
            batch = Xn[perm[lo : lo + bs]]
            t0 = time.perf_counter()
            m.partial_fit(batch)
            elapsed += time.perf_counter() - t0
            if step in args.sklearn_steps:
                runs[skl_name].append((step, elapsed, P.criterion(m.components_.T)))

    print(f"\n## Patch dictionary learning: N = {args.n} patches 8x8 of camera, h = {args.h}, lam = {lam} "
          f"(SPAMS lambda1 = scikit-learn alpha = {lam / 2}), batches of {bs}, float32, "
          f"{args.threads} thread(s) for every library")
    print("criterion: min_S E_1(W, S) on all patches (exact LARS codes); seconds: best of "
          f"{args.repeat} runs (scikit-learn: one run, timed step by step)")
    for name, pts in runs.items():
        print(f"  {name}: " + ", ".join(f"{k} steps {t:.2f} s -> {c:.5f}" for k, t, c in pts))
    print("time to reach the objective SPAMS reaches after n steps (the shortest run that reaches it); "
          "speed-up = their time / our time (> 1: ours is faster)")
    rows = []
    for k, t_ref, target in runs[spams_name]:
        row = {"target: SPAMS after": f"{k} steps", "objective": f"{target:.5f}"}
        times = {}
        shorts = [(spams_name, "SPAMS")] + [(name, f"ours ({enc})") for enc, name in ours_names.items()]
        for name, short in shorts + [(skl_name, "scikit-learn")]:
            hit = next(((kk, t) for kk, t, c in runs[name] if c <= target), None)
            times[short] = None if hit is None else hit[1]
            row[f"{short} [s]"] = "not reached" if hit is None else f"{hit[1]:.2f} ({hit[0]} steps)"
        for enc in ours_names:
            ours = times[f"ours ({enc})"]
            for short in ("SPAMS", "scikit-learn"):
                ok = times[short] is not None and ours is not None
                row[f"{enc}: vs {short}"] = f"{times[short] / ours:.2f}x" if ok else "-"
        rows.append(row)
    _table(rows, list(rows[0]))
    return spams_run(args.spams_steps[-1])


# ---------------------------------------------------------------------------------------- codes
def bench_coding(args):
    """Codes for fixed dictionaries: ours (sparse.lasso, sparse.fista) against SPAMS, scikit-learn, celer (_coding.py)."""
    ratios = {}
    for image in args.images:
        X = image_patches(image, n=args.n, seed=0, dtype=torch.float64)
        atoms = image_patches(image, n=args.n, seed=1, dtype=torch.float64)  # other patches of the same image
        for h in args.coding_h:
            W = sp.init_dictionary(atoms, h, seed=0)
            for lam in args.coding_lam:
                E_star, table, _ = _coding.bench(X, W, lam, threads=args.threads, repeat=args.repeat,
                                                celer_n=args.celer_n, isolate=not args.one_process)
                title = (f"Codes: {args.n} patches 8x8 of {image}, h = {h} atoms (other patches), lam = {lam}, "
                         f"float64, {args.threads} thread(s) for every library, {time.strftime('%Y-%m-%d')}")
                ratios[(image, h, lam)] = _coding.print_table(title, E_star, table)
    return ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--h", type=int, default=100)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per measurement (the minimum is reported)")
    ap.add_argument("--encoder-iter", type=int, default=30, help="our FISTA steps per mini-batch")
    ap.add_argument("--dict-passes", type=int, default=3,
                    help="our block-coordinate passes over the atoms per mini-batch (SPAMS: iter_updateD, 1)")
    ap.add_argument("--encoders", nargs="+", default=["fista", "lasso"], choices=["fista", "lasso"],
                    help="how our online dictionary learning codes a mini-batch")
    ap.add_argument("--spams-steps", type=int, nargs="+", default=[10, 20, 40, 80, 160])
    ap.add_argument("--ours-steps", type=int, nargs="+", default=[round(10 * 2 ** (k / 4)) for k in range(21)])
    ap.add_argument("--sklearn-steps", type=int, nargs="+", default=[10, 20, 40],
                    help="checkpoints of scikit-learn's single run (mini-batch steps)")
    ap.add_argument("--sklearn-algorithm", default="cd", help="'cd' (the faster one here) or 'lars'")
    ap.add_argument("--parts", nargs="+", default=["dictionary", "coding"], choices=["dictionary", "coding"])
    ap.add_argument("--images", nargs="+", default=["camera"], help="photographs for the coding benchmark")
    ap.add_argument("--coding-h", type=int, nargs="+", default=[100, 256])
    ap.add_argument("--coding-lam", type=float, nargs="+", default=[0.1, 0.5])
    ap.add_argument("--celer-n", type=int, default=300, help="samples celer codes (in a loop); its time is scaled")
    ap.add_argument("--one-process", action="store_true",
                    help="codes: time every library interleaved in this process (default: each in a fresh process)")
    args = ap.parse_args(argv)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with threadpool_limits(args.threads):
            print(f"torch {torch.__version__}, numpy {np.__version__}; threads: torch {torch.get_num_threads()}, "
                  f"SPAMS numThreads {args.threads}, scikit-learn n_jobs {args.threads}, BLAS {args.threads}")
            if "dictionary" in args.parts:
                P = Problem(args)
                t0 = time.perf_counter()
                bench_dictionary(P)
                print(f"(dictionary learning benchmark: {time.perf_counter() - t0:.0f} s)")
            if "coding" in args.parts:
                t0 = time.perf_counter()
                bench_coding(args)
                print(f"(coding benchmark: {time.perf_counter() - t0:.0f} s)")
    finally:
        torch.set_num_threads(torch_threads)  # run_all.py runs the next benchmark in this process


if __name__ == "__main__":
    main()
