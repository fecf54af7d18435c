"""Seconds per submission for autograding an assignment with the real nbgrader command line.

    .venv/bin/python benchmarks/grading_speed.py                 # ps1, 6 submissions
    .venv/bin/python benchmarks/grading_speed.py --students 20 --assignment ps1_sparse_coding

A temporary course gets ``--students`` submissions (the solution typed into the release,
the unmodified release and wrong implementations in turn) and ``nbgrader autograde``
grades them in one run, as an instructor would.  Printed: the seconds of every step and
the autograde seconds per submission (goal for ps1: under 10 s on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lecture_ae.grading.pipeline import fill_from_source, grade_submissions, replace_solution  # noqa: E402

GOAL_S = 10.0


def submissions(assignment: str, n: int) -> dict:
    solution = fill_from_source(assignment)
    kinds = [("solution", solution), ("release", None)]
    if assignment == "ps1_sparse_coding":
        kinds.append(("wrong", replace_solution(
            "ista", "def ista(X, W, lam, n_iter, step=None):\n    return torch.zeros(X.shape[0], W.shape[1])",
            base=solution)))
    return {f"{kinds[i % len(kinds)][0]}_{i:03d}": kinds[i % len(kinds)][1] for i in range(n)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="ps1_sparse_coding")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="keep the temporary course folder")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="grading-speed-"))
    t0 = time.perf_counter()
    run = grade_submissions(args.assignment, submissions(args.assignment, args.students), root=root)
    total = time.perf_counter() - t0
    graded = sum(st.autograded for st in run.students.values())
    per = run.seconds["autograde"] / max(graded, 1)

    print(f"autograding {args.assignment}: {args.students} submissions, {os.cpu_count()} CPU cores")
    print(f"{'step':<22}{'seconds':>10}")
    for step, sec in run.seconds.items():
        print(f"{step:<22}{sec:>10.1f}")
    print(f"{'all steps':<22}{total:>10.1f}")
    print()
    print(f"{'per submission':<22}{'seconds':>10}{'goal':>8}")
    print(f"{'autograde':<22}{per:>10.2f}{GOAL_S:>8.0f}  {'ok' if per < GOAL_S else 'SLOWER THAN THE GOAL'}")
    if graded != args.students:
        print(f"warning: only {graded} of {args.students} submissions were autograded")
    if args.keep:
        print(f"course folder: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
