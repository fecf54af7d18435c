"""``python -m lecture_ae.grading``: the instructor's grading commands (run in the course folder).

``grade ASSIGNMENT [--student ID]``
    The trusted grader alone, on ``grading/submitted/<student>/<assignment>/``: no kernel pass, no
    gradebook; prints a table (student, part, points, message). For a quick look before grading.
``autograde [ASSIGNMENT ...] [--student ID] [--workers N | --scheduler tcp://HOST:8786] [--only-new]``
    The full pipeline (what ``make autograde`` runs), every submission a Dask task
    (:mod:`~lecture_ae.grading.coordinator`): the sandboxed kernel pass and the trusted grader on
    the workers, nbgrader's gradebook written by this process alone; then the table and a summary.

Both need bubblewrap; ``--no-sandbox`` grades without it (a warning says what that gives up).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path

__all__ = ["main"]


def _course(root: str | None) -> Path:
    root = Path(root or os.getcwd()).resolve()
    if not (root / "nbgrader_config.py").exists():
        raise SystemExit(f"error: {root} is not a course folder (no nbgrader_config.py); run this from the "
                         "course folder or pass --course")
    return root


def _submissions(root: Path, assignment: str, student: str | None):
    base = root / "grading" / "submitted"
    if student is not None:
        folders = [base / student / assignment]
        if not folders[0].is_dir():
            raise SystemExit(f"error: no submission of student {student!r} for {assignment}: {folders[0]} does not exist")
        return folders
    return sorted(p for p in base.glob(f"*/{assignment}") if p.is_dir())


def _sources(root: Path, assignment: str) -> dict[str, dict]:
    folder = root / "solutions" / assignment
    if not folder.is_dir():
        known = sorted(p.name for p in (root / "solutions").glob("*") if p.is_dir())
        raise SystemExit(f"error: unknown assignment {assignment!r} (no {folder}); known: {', '.join(known) or 'none'}")
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.ipynb"))}


def _first_line(text: str, width: int = 100) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[0]
    for ln in lines[1:]:
        if ln.startswith("likely mistake:"):
            line += " | " + ln
            break
    return textwrap.shorten(line, width, placeholder=" ...")


def print_table(rows, out=sys.stdout) -> None:
    """rows: (student, part, points, max points, message)."""
    if not rows:
        print("no submissions", file=out)
        return
    w_s = max(7, *(len(r[0]) for r in rows))
    w_p = max(4, *(len(r[1]) for r in rows))
    print(f"{'student':<{w_s}}  {'part':<{w_p}}  {'points':>9}  message", file=out)
    print(f"{'-' * w_s}  {'-' * w_p}  {'-' * 9}  {'-' * 40}", file=out)
    for student, part, points, max_points, message in rows:
        score = f"{points:g} / {max_points:g}" if max_points is not None else "-"
        print(f"{student:<{w_s}}  {part:<{w_p}}  {score:>9}  {_first_line(message)}", file=out)


def cmd_grade(args) -> int:
    from .sandbox import Limits, SandboxUnavailable, require
    from .trusted import failed_report, grade_notebook
    from .autograde import collect_files

    root = _course(args.course)
    sources = _sources(root, args.assignment)
    try:
        sandbox = require(not args.no_sandbox and os.environ.get("LECTURE_AE_NO_SANDBOX", "") not in ("1", "true", "yes"))
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sandbox.limits = Limits.from_env()
    rows, records = [], {}
    for folder in _submissions(root, args.assignment, args.student):
        student = folder.parent.name
        for name, source in sources.items():
            path = folder / f"{name}.ipynb"
            t0 = time.perf_counter()
            try:
                submitted = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(submitted, dict) or "cells" not in submitted:
                    raise ValueError("not a notebook")
                report = grade_notebook(source, submitted, files=collect_files(folder, exclude=(path.name,)),
                                        sandbox=sandbox)
            except FileNotFoundError:
                report = failed_report(source, f"no notebook {path.name} in the submission")
            except (ValueError, UnicodeDecodeError) as exc:
                report = failed_report(source, f"{path.name} is not a valid notebook ({exc})")
            records[f"{student}/{name}"] = report.to_json()
            for gid, part in report.parts.items():
                rows.append((student, gid, part.points, part.max_points, part.full if args.full else part.message))
            print(f"graded {student} ({name}): {report.points:g} / {report.max_points:g} in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1, default=str))
    return 0


def cmd_autograde(args) -> int:
    from .coordinator import autograde
    from .sandbox import SandboxUnavailable, require

    root = _course(args.course)
    assignments = args.assignment or sorted(p.name for p in (root / "solutions").glob("ps*") if p.is_dir())
    sandbox = not args.no_sandbox and os.environ.get("LECTURE_AE_NO_SANDBOX", "") not in ("1", "true", "yes")
    try:
        require(sandbox)
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not sandbox:
        os.environ["LECTURE_AE_NO_SANDBOX"] = "1"  # for TrustedExecute, should it grade locally
    status = 0
    for assignment in assignments:
        _sources(root, assignment)  # a clear error for an unknown assignment
        if not _submissions(root, assignment, args.student):
            print(f"== {assignment}: no submissions in grading/submitted/<student>/{assignment}")
            continue
        try:
            summary = autograde(root, assignment, students=[args.student] if args.student else None,
                                workers=args.workers, scheduler=args.scheduler, only_new=args.only_new,
                                sandbox=sandbox, export=True)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print_table(_gradebook_rows(root, assignment, args.student))
        print(summary.table())
        if summary.failed:
            status = 1
        if summary.interrupted:
            return 130
    return status


def _gradebook_rows(root: Path, assignment: str, student: str | None):
    sys.path.insert(0, str(root))
    from nbgrader.api import Gradebook, MissingEntry
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    url = cfg.CourseDirectory.db_url
    rows = []
    with Gradebook(url, course_id=cfg.CourseDirectory.course_id) as gb:
        try:
            assignment_row = gb.find_assignment(assignment)
        except MissingEntry:
            return rows
        for sub in sorted(assignment_row.submissions, key=lambda s: s.student_id):
            if student and sub.student_id != student:
                continue
            for nb in sub.notebooks:
                for g in sorted(nb.grades, key=lambda g: g.name):
                    if g.cell.cell_type != "code" or not g.name.startswith("test"):
                        continue
                    comment = ""
                    record = root / "grading" / "trusted" / sub.student_id / assignment / f"{nb.name}.json"
                    if record.exists():
                        part = json.loads(record.read_text()).get("parts", {}).get(g.name, {})
                        comment = part.get("message", "")
                    rows.append((sub.student_id, g.name, float(g.score or 0), float(g.max_score), comment))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lecture_ae.grading", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="the trusted grader alone: a table of points and messages, no gradebook")
    g.add_argument("assignment", help="e.g. ps1_sparse_coding")
    g.add_argument("--student", help="only this student's submission")
    g.add_argument("--full", action="store_true", help="the instructors' messages (hidden parts with their inputs)")
    g.add_argument("--json", metavar="FILE", help="also write every report as JSON to FILE")
    a = sub.add_parser("autograde", help="nbgrader autograde with the sandbox and the trusted grader, into the gradebook")
    a.add_argument("assignment", nargs="*", help="assignments (default: every one in solutions/)")
    a.add_argument("--student", help="only this student")
    a.add_argument("--workers", type=int, help="worker processes of the local Dask cluster (default: one per core)")
    a.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="use the Dask cluster of this scheduler (started with `dask scheduler` and "
                        "`dask worker tcp://HOST:8786 --nworkers N --nthreads 1`)")
    a.add_argument("--only-new", action="store_true",
                   help="skip submissions whose notebooks are unchanged since they were graded")
    for p in (g, a):
        p.add_argument("--course", help="the course folder (default: the current folder)")
        p.add_argument("--no-sandbox", action="store_true",
                       help="grade without bubblewrap: the students' code can read your files (solutions/, the "
                            "gradebook); only for trusted submissions")
    args = parser.parse_args(argv)
    if args.command == "autograde" and args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    # nbgrader runs `alembic` from PATH when it creates a gradebook: this environment's first
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return {"grade": cmd_grade, "autograde": cmd_autograde}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
