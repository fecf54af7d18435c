"""Seconds per submission when autograding: plain nbgrader, trusted nbgrader, Dask.

    .venv/bin/python benchmarks/grading_speed.py                       # ps1, 20 submissions, every mode
    .venv/bin/python benchmarks/grading_speed.py --students 200 --modes dask-1,dask-2,scheduler
    .venv/bin/python benchmarks/grading_speed.py --assignment ps2_autoencoders --students 8

The same submissions (the solution typed into the release, the unmodified release and wrong
implementations in turn, and every tenth one the next student of the trusted grader's hostile
corpus, ``tests/hostile.py``: patched checks, file attacks, calls of the reference, process
killers, tampered tests; ``--hostile-every``) are graded in a fresh temporary course per mode,
with 30 s per cell (``--cell-timeout``; a course's default is 120 s, which only makes the
looping students longer):

``plain``      ``nbgrader autograde`` with nbgrader's own Execute step (the hidden tests run in the
               student's kernel: what the trusted grader replaces; no sandbox, no protection);
``trusted``    ``nbgrader autograde`` with the course's configuration: the notebook in a sandboxed
               kernel and the trusted grader's sandboxed child, one submission after the other
               (the two passes of a submission at the same time: up to two busy cores);
``serial-1``   the same with ``c.TrustedExecute.parallel = False``: one process at a time, one core;
``dask-N``     ``python -m lecture_ae.grading autograde --workers N``: a local Dask cluster of N
               single-threaded worker processes, the coordinator writing the gradebook;
``scheduler``  the same on a cluster started like an instructor does (``dask scheduler`` and
               ``dask worker --nworkers 2 --nthreads 1`` on the loopback).

Printed: wall seconds, seconds per submission, submissions per minute, the machine's CPU seconds
per submission and how many cores were busy on average (from ``/proc/stat``), and the ratio to
``plain`` (goal for the trusted pass: at most 1.5x plain) and of the Dask modes to the serial
ones (goal 1.8x on 2 cores); then where a submission's time goes in the Dask modes (the kernel
pass, the trusted grader and the coordinator's recording, medians) and the scaling this predicts
for N workers: a worker needs the task's CPU seconds per submission, the single coordinator its
recording seconds, so N workers give about min(N / task, 1 / record) submissions per second.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import table  # noqa: E402
from lecture_ae.grading.pipeline import (  # noqa: E402
    _env, fill_from_source, grade_submissions, replace_solution, run_nbgrader)

PLAIN = ("c.Autograde.autograde_preprocessors = ['nbgrader.preprocessors.Execute'] + "
         "c.Autograde.autograde_preprocessors[1:]")
SERIAL_1 = "c.TrustedExecute.parallel = False"
TRUSTED_GOAL = 1.5
DASK_GOAL = 1.8


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores), from ``/proc/stat``; None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def submissions(assignment: str, n: int, root: Path, hostile_every: int = 0) -> dict:
    """``n`` students: the solution, the release and a wrong ISTA in turn, and every ``hostile_every``-th
    one the next student of the trusted grader's hostile corpus (``tests/hostile.py``: patched checks,
    IPython hooks, file attacks, calls of the reference, process killers, tampered tests)."""
    solution = fill_from_source(assignment)
    kinds = [("solution", solution), ("release", None)]
    if assignment == "ps1_sparse_coding":
        kinds.append(("wrong", replace_solution(
            "ista", "def ista(X, W, lam, n_iter=100, S0=None):\n    return torch.zeros(X.shape[0], W.shape[1])",
            base=solution)))
    corpus = []
    if hostile_every:
        tests = str(Path(__file__).resolve().parents[1] / "tests")
        if tests not in sys.path:  # once, though every mode builds its students
            sys.path.insert(0, tests)
        import hostile

        corpus = list(hostile.hostile_students(hostile.spec(assignment), root).items())
    out, plain, bad = {}, 0, 0
    for i in range(n):
        if corpus and i % hostile_every == hostile_every - 1:
            name, transform = corpus[bad % len(corpus)]
            bad += 1
        else:
            name, transform = kinds[plain % len(kinds)]
            plain += 1
        # the number first: the coordinator takes the students in sorted order, and kind-first names would
        # put the same tricks side by side (both workers on process killers at once), which real ids do not
        out[f"s{i:03d}_{name}"] = transform
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster(root: Path, nworkers: int):
    port = _free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    log = open(root / "cluster.log", "w")
    from lecture_ae.grading.coordinator import _WORKER_CONFIG

    # the local cluster's worker settings, as environment variables (the README's commands)
    dask_env = {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
                for key, value in _WORKER_CONFIG.items()}
    env = _env({"LECTURE_AE_PROGRESS": "0", **dask_env})
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)]
    address = f"tcp://127.0.0.1:{port}"
    procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", str(nworkers), "--nthreads", "1",
                                   "--no-dashboard", "--local-directory", str(root)], stdout=log,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True))
    from dask.distributed import Client

    with Client(address, timeout="60s") as c:
        c.wait_for_workers(nworkers, timeout=120)

    def close():
        for p in procs[::-1]:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)
        log.close()

    return address, close


def run_mode(mode: str, assignment: str, n: int, workdir: Path, hostile_every: int = 0, timeout: float = 120) -> dict:
    root = workdir / mode
    subs = submissions(assignment, n, root, hostile_every)  # the same students; a file attack aims at this course
    env = {"LECTURE_AE_PROGRESS": "0", "LECTURE_AE_CELL_TIME_LIMIT": str(timeout)}
    if mode in ("plain", "trusted", "serial-1"):
        extra = {"plain": PLAIN, "trusted": "", "serial-1": SERIAL_1}[mode]
        grade_submissions(assignment, subs, root=root, timeout=timeout, autograde=False, env=env,
                          config_extra=extra)
        busy0 = _busy_seconds()
        t0 = time.perf_counter()
        run_nbgrader(["autograde", assignment], cwd=root, env=_env(env))  # exits 1 when a submission failed
        wall = time.perf_counter() - t0
        busy = None if busy0 is None else _busy_seconds() - busy0
        graded = sum(1 for sid in subs if (root / "grading" / "autograded" / sid / assignment).is_dir())
        return {"mode": mode, "wall": wall, "busy": busy, "graded": graded, "breakdown": {}}
    grade_submissions(assignment, subs, root=root, timeout=timeout, autograde=False, env=env)
    from lecture_ae.grading.coordinator import autograde

    os.environ.update(env)
    close = None
    busy0 = _busy_seconds()
    try:
        if mode == "scheduler":
            address, close = _cluster(root, 2)
            summary = autograde(root, assignment, scheduler=address, progress=True, export=False, log=lambda *a: None)
        else:
            summary = autograde(root, assignment, workers=int(mode.split("-")[1]), progress=True, export=False,
                                log=lambda *a: None)
    finally:
        if close is not None:
            close()
    busy = None if busy0 is None else _busy_seconds() - busy0
    stages = {}
    for per in summary.breakdown.values():
        if "kernel" in per and "kernel start" in per:  # the kernel pass = its start(s) + the cells and shutdown
            per = {**per, "cells": per["kernel"] - per["kernel start"]}
        for stage, secs in per.items():
            stages.setdefault(stage, []).append(secs)
    return {"mode": mode, "wall": summary.wall, "busy": busy, "graded": len(summary.graded) + len(summary.failed),
            "breakdown": {k: statistics.median(v) for k, v in stages.items()},
            "slowest": sorted(summary.seconds.items(), key=lambda kv: -kv[1])[:6]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="ps1_sparse_coding")
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--modes", default="plain,trusted,serial-1,dask-1,dask-2,scheduler",
                        help="comma-separated: plain, trusted, serial-1, dask-N, scheduler")
    parser.add_argument("--hostile-every", type=int, default=10, metavar="M",
                        help="every M-th submission is the next of the hostile corpus (0: none; default 10)")
    parser.add_argument("--cell-timeout", type=float, default=30,
                        help="seconds per cell and per call of a student's function (default 30; courses: 120)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary course folders")
    args = parser.parse_args(argv)
    if args.students < 1:
        parser.error("--students must be at least 1")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("plain", "trusted", "serial-1", "scheduler") and not (m.startswith("dask-") and m[5:].isdigit()):
            parser.error(f"--modes: unknown mode {m!r}")

    if args.hostile_every < 0 or args.cell_timeout <= 0:
        parser.error("--hostile-every must be at least 0 and --cell-timeout positive")
    workdir = Path(tempfile.mkdtemp(prefix="grading-speed-"))
    results = []
    try:
        for mode in modes:
            results.append(run_mode(mode, args.assignment, args.students, workdir, args.hostile_every,
                                    args.cell_timeout))
            print(f"  {mode}: {results[-1]['wall']:.1f} s", file=sys.stderr)
    finally:
        if args.keep:
            print(f"course folders: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    n = args.students
    wall = {r["mode"]: r["wall"] for r in results}
    plain = wall.get("plain")
    hostile = n // args.hostile_every if args.hostile_every else 0
    print(f"\nautograding {args.assignment}: {n} submissions ({hostile} from the hostile corpus), "
          f"{os.cpu_count()} CPU cores, {args.cell_timeout:g} s per cell")
    rows = []
    for r in results:
        per = r["wall"] / n
        rows.append({"mode": r["mode"], "graded": f"{r['graded']}/{n}", "wall s": f"{r['wall']:.1f}",
                     "s/submission": f"{per:.2f}", "submissions/min": f"{60 / per:.1f}",
                     "CPU s/submission": f"{r['busy'] / n:.2f}" if r.get("busy") is not None else "-",
                     "cores busy": f"{r['busy'] / r['wall']:.2f}" if r.get("busy") is not None else "-",
                     "vs plain": f"{plain / r['wall']:.2f}x" if plain else "-"})
    table(rows, ["mode", "graded", "wall s", "s/submission", "submissions/min", "CPU s/submission", "cores busy",
                 "vs plain"])
    if plain and "trusted" in wall:
        ratio = wall["trusted"] / plain
        print(f"\ntrusted time / plain time = {ratio:.2f} (goal at most {TRUSTED_GOAL}): "
              f"{'ok' if ratio <= TRUSTED_GOAL else 'SLOWER THAN THE GOAL'}")
    for serial in [m for m in ("trusted", "serial-1") if m in wall]:
        for r in results:
            if r["mode"].startswith("dask-") or r["mode"] == "scheduler":
                ratio = wall[serial] / r["wall"]
                print(f"{r['mode']} vs {serial}: {ratio:.2f}x faster (goal {DASK_GOAL}x on 2 cores): "
                      f"{'ok' if ratio >= DASK_GOAL else 'not reached'}")
    trusted = next((r for r in results if r["mode"] == "trusted" and r.get("busy") is not None), None)
    if trusted:
        cores = trusted["busy"] / trusted["wall"]
        print(f"serial trusted grading keeps {cores:.2f} cores busy: on {os.cpu_count()} cores no engine "
              f"can be more than {os.cpu_count() / cores:.2f}x faster than it")
    split = [r for r in results if r["breakdown"]]
    if split:
        print("\nper submission (median seconds) in the Dask modes: on a worker the kernel pass (its start, then the\n"
              "cells and the shutdown) and the trusted grader one after the other; in the coordinator the recording\n"
              "(nbgrader's autograde with the task's results: the gradebook, the autograded notebook)")
        order = ["kernel start", "cells", "kernel", "trusted", "record"]
        stages = sorted({s for r in split for s in r["breakdown"]}, key=lambda s: (order + [s]).index(s))
        table([{"mode": r["mode"], **{s: f"{r['breakdown'].get(s, 0):.2f}" for s in stages}} for r in split],
              ["mode", *stages])
        for r in split:
            print(f"slowest tasks ({r['mode']}): " + ", ".join(f"{sid} {sec:.0f} s" for sid, sec in r["slowest"]))
        one = min(split, key=lambda r: int(r["mode"][5:]) if r["mode"].startswith("dask-") else 99)
        task = one["breakdown"].get("kernel", 0) + one["breakdown"].get("trusted", 0)
        record = one["breakdown"].get("record", 0)
        if task and record:
            print(f"\nexpected with N workers (from {one['mode']}): a task {task:.2f} s on its worker, the "
                  f"coordinator's recording {record:.2f} s per submission, so about min(N / {task:.2f}, "
                  f"1 / {record:.2f}) submissions per second: it stops scaling near N = {task / record:.0f} workers "
                  f"({60 / record:.0f} submissions per minute)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
