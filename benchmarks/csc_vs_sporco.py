"""Convolutional sparse coding against SPORCO: the objective reached and the time to the same objective.

Run: ``.venv/bin/python benchmarks/csc_vs_sporco.py`` (or ``make bench``); ``--help`` for the sizes.
Not a test: the numbers depend on the machine; all of them are measured in one run, with
the same number of threads for every library (``--threads``, default 1: torch's intra-op
threads, the BLAS pools via threadpoolctl, and SPORCO's pyFFTW threads).

The problem.  SPORCO's ``admm.cbpdn.ConvBPDN`` minimises, for one image s,

    1/2 || sum_m d_m * x_m - s ||^2 + lmbda sum_m || x_m ||_1        (periodic boundary),

and our ``csc_objective`` (the lecture's formula, no factor 1/2, mean over the N images) is

    1/N sum_i || x_i - sum_j W_j * s_ij ||^2 + lam sum_ij || s_ij ||_1 ,

so with ``boundary="circular"`` and ``lmbda = lam / 2`` ours is 2/N times SPORCO's: the same
minimiser.  Every number below is OUR objective, evaluated by ``csc_objective`` on what each
solver returns (for SPORCO the sparse split variable Y that ``solve()`` returns).

1. Coding (fixed filters).  The image is scikit-image's camera, downscaled to ``--size`` and
   high-passed (image minus its Gaussian blur, unit RMS: ``convolutional.highpass``); the
   filters are SPORCO's bundled learned dictionary ``G:8x8x32`` (unit norm), the same for
   both.  SPORCO runs with its default options (ADMM, over-relaxation 1.8, automatic rho),
   ``FastSolve`` and no residual stopping rule, so that it runs the iterations it is given.
   Each solver is first traced (objective after every iteration); the best objective that
   any of them reaches is the reference, and for each tolerance we report the iterations
   and the time each needs to come within it (timed again without evaluation, best of
   ``--repeat`` runs; SPORCO's time includes building its solver object, ours the step size).
2. Dictionary learning.  Three high-passed photographs (camera, brick, coins; 128 x 128
   crops), 16 filters 8 x 8, the same random initial filters for both.  SPORCO's
   ``dictlrn.cbpdndl.ConvBPDNDictLearn`` (ADMM codes, consensus-ADMM dictionary update, the rho
   values of SPORCO's own example scripts) against our ``learn_conv_filters`` (circular, FFT
   backend, adaptive step; ``--dl-code-iters`` FISTA steps on the codes and
   ``--dl-filter-iters`` on the filters per outer iteration).  SPORCO keeps its filters at
   unit norm, ours in the unit ball: both are feasible for the same objective.  After every
   outer iteration each algorithm's current (filters, codes) pair is evaluated with our
   objective (outside the timing; SPORCO's seconds include its own per-iteration
   bookkeeping, ours the objective our algorithm needs to accept a step).  Targets: the
   objective SPORCO reaches after 1/4, 1/2 and all of its outer iterations; we report the
   time our learner needs to reach each (best of ``--repeat`` runs for both).
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore", message="Module pyfftw")  # SPORCO's import-time notice

from sporco import util as sputil  # noqa: E402  (benchmark extra / test extra)
from sporco.admm import cbpdn  # noqa: E402
from sporco.dictlrn import cbpdndl  # noqa: E402
import sporco.fft  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from _common import table as _table  # noqa: E402  (benchmarks/_common.py)

from lecture_ae.data import load_image  # noqa: E402
from lecture_ae.sparse import convolutional as C  # noqa: E402




def _first(values, target):
    """1-based index of the first value <= target, or None."""
    return next((i + 1 for i, v in enumerate(values) if v <= target), None)


def _to_torch_codes(Y):
    """SPORCO's coefficient array (H, W, 1, K, M) -> ours (K, M, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(Y.reshape(Y.shape[0], Y.shape[1], Y.shape[-2], Y.shape[-1]))).permute(
        2, 3, 0, 1)


# ------------------------------------------------------------------------------------- coding
class _SporcoRun:
    """Run ConvBPDN for n iterations; record, per iteration, the seconds of SPORCO's own work
    (construction included, our callback excluded) and optionally our objective at Y."""

    def __init__(self, D, img, lmbda, extra_opt):
        self.D, self.img, self.lmbda, self.extra = D, img, lmbda, extra_opt

    def __call__(self, n_iter, X=None, W=None, lam=None):
        seconds, objective = [], []
        spent = [0.0]  # seconds inside the callback, not SPORCO's work

        def callback(solver):
            t_in = time.perf_counter()
            seconds.append(t_in - t0 - spent[0])
            if X is not None:
                objective.append(float(C.csc_objective(X, W, _to_torch_codes(solver.Y), lam, "circular")))
            spent[0] += time.perf_counter() - t_in
            return False

        opt = {"Verbose": False, "MaxMainIter": n_iter, "RelStopTol": 0.0, "FastSolve": True,
               "DataType": np.float32, "Callback": callback}
        opt.update(self.extra)
        t0 = time.perf_counter()
        solver = cbpdn.ConvBPDN(self.D, self.img, self.lmbda, cbpdn.ConvBPDN.Options(opt))
        solver.solve()
        return seconds, objective, _to_torch_codes(solver.Y)


def bench_coding(args):
    img = load_image("camera")
    if args.size != img.shape[0]:
        from skimage.transform import resize

        img = resize(img, (args.size, args.size), anti_aliasing=True)
    img = np.ascontiguousarray(C.highpass(img, sigma=2.0), dtype=np.float32)
    D = sputil.convdicts()["G:8x8x32"].astype(np.float32)
    D /= np.linalg.norm(D, axis=(0, 1))
    W = torch.from_numpy(np.ascontiguousarray(D.transpose(2, 0, 1)))  # (h, k, k)
    X = torch.from_numpy(img)[None]
    lam = args.lam

    def ours(adaptive):
        def run(n_iter, history=False):
            return C.csc_fista(X, W, lam, n_iter, boundary="circular", backend="fft", adaptive_step=adaptive,
                               history=history)
        return run

    ours_methods = {"ours: FISTA, step 1/L": ours(False), "ours: FISTA, adaptive step": ours(True)}
    sporco_methods = {"SPORCO ConvBPDN (defaults)": _SporcoRun(D, img, lam / 2, {})}
    if args.sporco_highmem:
        sporco_methods["SPORCO ConvBPDN (HighMemSolve)"] = _SporcoRun(D, img, lam / 2, {"HighMemSolve": True})

    # warm-up (FFT plans: pyFFTW plans with FFTW_MEASURE on first use, torch caches its plans)
    for run in ours_methods.values():
        run(3)
    for run in sporco_methods.values():
        run(3)

    # traces: our objective after every iteration
    traces, sporco_secs = {}, {}
    for name, run in ours_methods.items():
        traces[name] = run(args.iters, history=True)[1]
    for name, run in sporco_methods.items():
        secs, objs, _ = run(args.iters, X, W, lam)
        traces[name], sporco_secs[name] = objs, secs
    best = min(min(t) for t in traces.values())

    rows = []
    for rel in args.rel:
        target = best * (1 + rel)
        ks = {name: _first(tr, target) for name, tr in traces.items()}
        times = {}
        for name, k in ks.items():
            if k is None:
                continue
            if name in ours_methods:
                t_best = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    S = ours_methods[name](k)
                    t_best = min(t_best, time.perf_counter() - t0)
                reached = float(C.csc_objective(X, W, S, lam, "circular"))
            else:
                secs = list(sporco_secs[name][:k])
                for _ in range(args.repeat - 1):  # timed again without our evaluation in the callback
                    more, _, S = sporco_methods[name](k)
                    secs = [min(a, b) for a, b in zip(secs, more)]
                t_best = secs[k - 1]
                reached = traces[name][k - 1]
            times[name] = (k, t_best, reached)
        ref = times.get("SPORCO ConvBPDN (defaults)")
        for name in traces:
            if name not in times:
                rows.append({"tolerance": f"{rel:g}", "solver": name, "iterations": f"> {args.iters}",
                             "seconds": "-", "objective": "not reached", "SPORCO time / this time": "-"})
                continue
            k, t, reached = times[name]
            rows.append({"tolerance": f"{rel:g}", "solver": name, "iterations": k, "seconds": f"{t:.2f}",
                         "objective": f"{reached:.2f}",
                         "SPORCO time / this time": f"{ref[1] / t:.2f}x" if ref else "-"})
    print(f"\n## CSC codes: camera {args.size}x{args.size} (high-passed), SPORCO's G:8x8x32 filters, lam = {lam} "
          f"(SPORCO lmbda = {lam / 2}), circular boundary, float32, {args.threads} thread(s) for every library")
    print(f"best objective reached by any solver in {args.iters} iterations: {best:.3f}; "
          "time to come within the tolerance (relative) of it")
    for name, tr in traces.items():
        print(f"  {name}: objective after {len(tr)} iterations {tr[-1]:.3f} (best {min(tr):.3f})")
    _table(rows, list(rows[0]))
    return rows


# -------------------------------------------------------------------------- dictionary learning
def _sporco_dictlearn(X, W0, lam, n_iter, rho_x, rho_d):
    """ConvBPDNDictLearn; per outer iteration: SPORCO's seconds (our callback excluded), our objective."""
    S_np = np.ascontiguousarray(X.permute(1, 2, 0).numpy())  # (H, W, K)
    D0 = np.ascontiguousarray(W0.permute(1, 2, 0).numpy())  # (k, k, M)
    seconds, objective = [], []
    spent = [0.0]

    def callback(d):
        t_in = time.perf_counter()
        seconds.append(t_in - t0 - spent[0])
        Wd = torch.from_numpy(np.ascontiguousarray(d.getdict().reshape(D0.shape))).permute(2, 0, 1)
        objective.append(float(C.csc_objective(X, Wd, _to_torch_codes(d.getcoef()), lam, "circular")))
        spent[0] += time.perf_counter() - t_in
        return False

    opt = cbpdndl.ConvBPDNDictLearn.Options(
        {"Verbose": False, "MaxMainIter": n_iter, "Callback": callback, "CBPDN": {"rho": rho_x},
         "CCMOD": {"rho": rho_d}}, xmethod="admm", dmethod="cns")
    t0 = time.perf_counter()
    cbpdndl.ConvBPDNDictLearn(D0, S_np, lam / 2, opt, xmethod="admm", dmethod="cns").solve()
    return seconds, objective


def bench_dictionary(args):
    X = C.image_crops(("camera", "brick", "coins"), size=128, per_image=1, seed=0)
    N, h, k, lam = X.shape[0], args.dl_filters, 8, args.dl_lam
    W0 = C.init_filters(X, h, k, seed=0)
    lm = lam / 2
    enc, fil = args.dl_code_iters, args.dl_filter_iters
    sporco_name = "SPORCO ConvBPDNDictLearn"
    ours_name = f"ours: learn_conv_filters ({enc} code + {fil} filter steps, adaptive step)"
    methods = {
        sporco_name: lambda: _sporco_dictlearn(X, W0, lam, args.dl_sporco_iters, 50.0 * lm + 0.5, 10.0),
    }

    def ours():
        res = C.learn_conv_filters(X, h, k, lam, n_iter=args.dl_iters, encoder_iter=enc, filter_iter=fil,
                                   boundary="circular", backend="fft", adaptive_step=True, W0=W0, show_progress=False)
        return res.seconds[1:], res.objective[1:]

    methods[ours_name] = ours
    C.learn_conv_filters(X, h, k, lam, n_iter=1, encoder_iter=2, filter_iter=2, boundary="circular", backend="fft",
                         W0=W0, show_progress=False)  # warm-up (FFT plans)
    runs = {}
    for name, run in methods.items():
        secs, objs = run()
        for _ in range(args.repeat - 1):
            more, objs2 = run()
            if not np.allclose(objs, objs2, rtol=1e-4):
                print(f"  (note: {name} is not deterministic: {objs[-1]} vs {objs2[-1]})")
            secs = [min(a, b) for a, b in zip(secs, more)]
        runs[name] = (secs, objs)
    sp_secs, sp_objs = runs[sporco_name]
    rows = []
    for j in sorted({max(1, args.dl_sporco_iters // 4), args.dl_sporco_iters // 2, args.dl_sporco_iters}):
        target = sp_objs[j - 1]
        row = {"target: SPORCO's objective after": f"{j} outer iterations", "objective": f"{target:.2f}",
               "SPORCO [s]": f"{sp_secs[j - 1]:.2f}"}
        secs, objs = runs[ours_name]
        i = _first(objs, target)
        if i is None:
            row.update({"ours: outer iterations": f"> {len(objs)}", "ours [s]": "-", "SPORCO time / our time": "not reached"})
        else:
            row.update({"ours: outer iterations": i, "ours [s]": f"{secs[i - 1]:.2f}",
                        "SPORCO time / our time": f"{sp_secs[j - 1] / secs[i - 1]:.2f}x"})
        rows.append(row)
    print(f"\n## CSC dictionary learning: N = {N} high-passed crops 128x128 (camera, brick, coins), h = {h} filters "
          f"{k}x{k}, lam = {lam} (SPORCO lmbda = {lm}), circular, float32, {args.threads} thread(s) for every library")
    print(f"  {sporco_name}: ADMM codes, consensus-ADMM filters, rho_x = {50.0 * lm + 0.5:g}, rho_d = 10 "
          f"(SPORCO's example settings); objective {sp_objs[-1]:.2f} after {len(sp_objs)} outer iterations, "
          f"{sp_secs[-1]:.2f} s")
    secs, objs = runs[ours_name]
    print(f"  {ours_name}: objective {objs[-1]:.2f} after {len(objs)} outer iterations, {secs[-1]:.2f} s")
    _table(rows, list(rows[0]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    ap.add_argument("--size", type=int, default=256, help="camera image size for the coding benchmark")
    ap.add_argument("--lam", type=float, default=1.0, help="our lambda for coding (SPORCO's lmbda = lam / 2)")
    ap.add_argument("--iters", type=int, default=250, help="iterations of each coding trace")
    ap.add_argument("--rel", type=float, nargs="+", default=[1e-2, 1e-3], help="relative tolerances")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per measurement (the minimum is reported)")
    ap.add_argument("--sporco-highmem", action="store_true", help="also SPORCO's HighMemSolve variant")
    ap.add_argument("--dl-filters", type=int, default=16)
    ap.add_argument("--dl-lam", type=float, default=0.5)
    ap.add_argument("--dl-iters", type=int, default=30, help="our outer iterations")
    ap.add_argument("--dl-code-iters", type=int, default=10, help="our FISTA steps on the codes per outer iteration")
    ap.add_argument("--dl-filter-iters", type=int, default=20, help="our FISTA steps on the filters per outer iteration")
    ap.add_argument("--dl-sporco-iters", type=int, default=100, help="SPORCO's outer iterations")
    ap.add_argument("--skip-coding", action="store_true")
    ap.add_argument("--skip-dictionary", action="store_true")
    args = ap.parse_args(argv)
    saved = torch.get_num_threads(), sporco.fft.pyfftw_threads
    torch.set_num_threads(args.threads)
    sporco.fft.pyfftw_threads = args.threads
    try:
        with threadpool_limits(args.threads):
            _run(args)
    finally:  # run_all.py runs the next benchmark in this process
        torch.set_num_threads(saved[0])
        sporco.fft.pyfftw_threads = saved[1]


def _run(args):
    print(f"torch {torch.__version__}, numpy {np.__version__}, sporco {__import__('sporco').__version__}; "
          f"threads: torch {torch.get_num_threads()}, pyFFTW {sporco.fft.pyfftw_threads}, BLAS {args.threads}")
    t0 = time.perf_counter()
    if not args.skip_coding:
        bench_coding(args)
        print(f"(coding benchmark: {time.perf_counter() - t0:.0f} s)")
    if not args.skip_dictionary:
        t0 = time.perf_counter()
        bench_dictionary(args)
        print(f"(dictionary benchmark: {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
