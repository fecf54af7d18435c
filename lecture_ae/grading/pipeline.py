"""Run the real ``nbgrader`` command line on an assignment in a temporary course folder.

Used by the end-to-end tests (``tests/test_nbgrader_*.py``) and by
``benchmarks/grading_speed.py``; also handy for an instructor who wants to try
an assignment before releasing it.  :func:`grade_submissions` does the whole
round trip with the repository's ``nbgrader_config.py``::

    run = grade_submissions("ps1_sparse_coding", {
        "good": fill_from_source("ps1_sparse_coding"),   # the solution, typed into the release
        "empty": None,                                   # the unmodified release
        "sign": replace_solution("soft_threshold", "def soft_threshold(x, lam):\\n    return x"),
    }, timeout=20)
    run.students["good"].score, run.students["sign"].cells["test_soft_threshold"].score
    run.students["sign"].output("test_soft_threshold")    # the message the student gets
    run.students["sign"].feedback_text                     # the generated feedback HTML, as text

Steps: copy ``nbgrader_config.py`` and ``solutions/<assignment>`` into a fresh
course folder; ``nbgrader generate_assignment``; write each student's notebook
(the release, passed through the student's transform) to
``grading/submitted/<student>/<assignment>/`` ("collect" by copying, as an
instructor does with the files of a learning platform); ``nbgrader autograde``
once for all students; ``nbgrader generate_feedback``; ``nbgrader export``.
Per-cell scores come from the gradebook through nbgrader's API.
"""
from __future__ import annotations

import copy
import csv
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Mapping

__all__ = [
    "REPO_ROOT",
    "nbgrader_command",
    "make_course",
    "read_notebook",
    "fill_from_source",
    "replace_solution",
    "strip_solution_markers",
    "GradedCell",
    "StudentGrades",
    "CourseRun",
    "grade_submissions",
    "validate",
    "chain",
    "html_to_text",
    "run_nbgrader",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def nbgrader_command() -> list[str]:
    """The ``nbgrader`` executable next to the running Python (the project's virtual environment)."""
    exe = Path(sys.executable).with_name("nbgrader")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nbgrader"]


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NBGRADER_DB_URL", None)  # a test course never touches the real gradebook
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("MPLBACKEND", None)  # the kernel's inline backend keeps figures in the autograded notebook
    env.setdefault("LECTURE_AE_PROGRESS", "0")
    # one BLAS/OpenMP thread per kernel: on a busy machine spinning threads make small numerics 10-20x slower
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env.update(extra or {})
    return env


def run_nbgrader(args, *, cwd, env=None, timeout=None) -> subprocess.CompletedProcess:
    """``nbgrader <args>`` in the course folder ``cwd``; output captured, exit status not checked."""
    return subprocess.run(nbgrader_command() + [str(a) for a in args], cwd=cwd, env=env or _env(), text=True,
                          capture_output=True, timeout=timeout)


def make_course(root, assignments, *, repo=REPO_ROOT) -> Path:
    """A course folder at ``root`` with the repository's config and the source of ``assignments``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(repo) / "nbgrader_config.py", root / "nbgrader_config.py")
    for a in [assignments] if isinstance(assignments, str) else assignments:
        shutil.copytree(Path(repo) / "solutions" / a, root / "solutions" / a,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return root


def read_notebook(path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


# ------------------------------------------------------------------ student notebooks
_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def strip_solution_markers(source: str) -> str:
    """Source of a solution cell as a student would type it: without the ``### BEGIN/END SOLUTION`` lines."""
    return "\n".join(line for line in source.splitlines() if not _MARKER.match(line))


def _solution_cells(nb):
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            yield meta.get("grade_id"), cell


def fill_from_source(assignment: str, *, repo=REPO_ROOT, only=None) -> Callable:
    """A transform that types the instructor's solutions into the release (all, or the grade ids in ``only``)."""
    src_dir = Path(repo) / "solutions" / assignment
    sources = {}
    for path in sorted(src_dir.glob("*.ipynb")):
        for gid, cell in _solution_cells(read_notebook(path)):
            sources[gid] = strip_solution_markers(cell.source)

    def transform(nb):
        for gid, cell in _solution_cells(nb):
            if gid in sources and (only is None or gid in only):
                cell.source = sources[gid]
        return nb

    return transform


def replace_solution(grade_id: str, source: str, base: Callable | None = None) -> Callable:
    """A transform that sets the solution cell ``grade_id`` to ``source`` (after ``base``, e.g. the full solution)."""

    def transform(nb):
        if base is not None:
            nb = base(nb)
        for gid, cell in _solution_cells(nb):
            if gid == grade_id:
                cell.source = source
                return nb
        raise KeyError(f"no solution cell with grade_id {grade_id!r}")

    return transform


def chain(*transforms: Callable) -> Callable:
    """Apply several transforms in turn."""

    def transform(nb):
        for t in transforms:
            nb = t(nb)
        return nb

    return transform


# --------------------------------------------------------------------------- results
@dataclass
class GradedCell:
    grade_id: str
    score: float | None
    max_score: float
    needs_manual_grade: bool
    is_test: bool = False  # an autograder test cell (grade, not solution) rather than a manually graded answer
    output: str = ""  # what the cell printed and raised in the autograded notebook (ANSI codes removed)


@dataclass
class StudentGrades:
    student_id: str
    cells: dict[str, GradedCell] = field(default_factory=dict)
    feedback_text: str = ""
    autograded: bool = False

    @property
    def score(self) -> float:
        """Sum of the scores known so far (manual cells that still need grading count 0)."""
        return float(sum(c.score or 0.0 for c in self.cells.values()))

    def tests(self) -> dict[str, GradedCell]:
        """The autograder test cells."""
        return {k: c for k, c in self.cells.items() if c.is_test}

    @property
    def test_score(self) -> float:
        return float(sum(c.score or 0.0 for c in self.tests().values()))

    def output(self, grade_id: str) -> str:
        return self.cells[grade_id].output


@dataclass
class CourseRun:
    root: Path
    assignment: str
    students: dict[str, StudentGrades]
    logs: dict[str, subprocess.CompletedProcess]
    seconds: dict[str, float]
    grades_csv: list[dict] = field(default_factory=list)

    def log(self, step: str) -> str:
        p = self.logs[step]
        return (p.stdout or "") + (p.stderr or "")


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_to_text(text: str) -> str:
    parser = _Text()
    parser.feed(text)
    return html.unescape("".join(parser.parts))


def _cell_output(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append("\n".join(out.traceback) or f"{out.ename}: {out.evalue}")
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return _ANSI.sub("", "\n".join(parts))


def grade_submissions(
    assignment: str,
    submissions: Mapping[str, Callable | None],
    *,
    root=None,
    repo=REPO_ROOT,
    timeout: int | None = 30,
    check_time_limit: float | None = None,
    extra_files: Mapping[str, Mapping[str, str | bytes]] | None = None,
    source_files: Mapping[str, str | bytes] | None = None,
    feedback: bool = True,
    export: bool = True,
    env: Mapping[str, str] | None = None,
    engine: str = "dask",
    workers: int = 2,
    autograde: bool = True,
    config_extra: str = "",
    autograde_args: tuple = (),
) -> CourseRun:
    """Generate, submit, autograde (one run for all students), give feedback and export; return the grades.

    Parameters
    ----------
    submissions : ``{student_id: transform}``; a transform takes the released notebook
        (an ``nbformat`` node, a private copy) and returns the submitted one; ``None`` submits
        the release unchanged.
    root : course folder (default: a new temporary folder, kept so it can be inspected).
    timeout : ``Execute.timeout`` in seconds for this course (per cell).
    check_time_limit : per-call limit of the checks (``LECTURE_AE_CHECK_TIME_LIMIT``).
    extra_files : ``{student_id: {relative path: content}}`` submitted next to the notebook
        (written after it, so a path equal to the notebook's replaces it).
    source_files : ``{relative path: content}`` added to ``solutions/<assignment>/`` of the
        course before the release is generated (to test what nbgrader copies).
    engine : ``"dask"``: ``python -m lecture_ae.grading autograde`` (every submission a task on a
        local cluster of ``workers`` processes, the gradebook written by the coordinator);
        ``"nbgrader"``: plain ``nbgrader autograde`` (one submission after the other; the course's
        configuration still makes it trusted).
    autograde : False: only the course, the release and the submissions (to grade them otherwise).
    config_extra : lines appended to the course's ``nbgrader_config.py`` (e.g. plain nbgrader's Execute).
    autograde_args : more arguments of ``python -m lecture_ae.grading autograde`` (engine ``"dask"``).
    """
    if engine not in ("dask", "nbgrader"):
        raise ValueError(f"engine must be 'dask' or 'nbgrader', got {engine!r}")
    import nbformat

    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix=f"course-{assignment}-"))
    make_course(root, [assignment], repo=repo)
    if config_extra:
        with open(root / "nbgrader_config.py", "a") as fh:
            fh.write("\n" + config_extra + "\n")
    for rel, content in (source_files or {}).items():
        _write(root / "solutions" / assignment / rel, content)
    extra_env = dict(env or {})
    if timeout is not None:
        extra_env["NBGRADER_EXECUTE_TIMEOUT"] = str(int(timeout))
    if check_time_limit is not None:
        extra_env["LECTURE_AE_CHECK_TIME_LIMIT"] = str(check_time_limit)
    environ = _env(extra_env)
    logs, seconds = {}, {}

    def step(name, args):
        t0 = time.perf_counter()
        logs[name] = run_nbgrader(args, cwd=root, env=environ)
        seconds[name] = time.perf_counter() - t0
        return logs[name]

    p = step("generate_assignment", ["generate_assignment", assignment, "--force"])
    if p.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{p.stdout}\n{p.stderr}")
    release = root / "exercises" / assignment
    notebooks = sorted(release.glob("*.ipynb"))
    for sid, transform in submissions.items():
        dest = root / "grading" / "submitted" / sid / assignment
        shutil.copytree(release, dest)
        for nb_path in notebooks:
            nb = read_notebook(nb_path)
            if transform is not None:
                nb = transform(copy.deepcopy(nb))
            nbformat.write(nb, str(dest / nb_path.name))
        for rel, content in (extra_files or {}).get(sid, {}).items():
            _write(dest / rel, content)

    if not autograde:
        pass
    elif engine == "nbgrader":
        step("autograde", ["autograde", assignment])  # exits 1 when a submission failed; grades are read below
    else:
        t0 = time.perf_counter()
        logs["autograde"] = subprocess.run(
            [sys.executable, "-m", "lecture_ae.grading", "autograde", assignment, "--workers", str(workers),
             *autograde_args],
            cwd=root, env=environ, text=True, capture_output=True)
        seconds["autograde"] = time.perf_counter() - t0
    if feedback and autograde:
        step("generate_feedback", ["generate_feedback", assignment])
    csv_rows = []
    if export and autograde:
        step("export", ["export"])
        grades_file = root / "grading" / "grades.csv"
        if grades_file.exists():
            with open(grades_file, newline="") as fh:
                csv_rows = list(csv.DictReader(fh))

    students = {sid: StudentGrades(sid) for sid in submissions}
    _read_gradebook(gradebook_url(root, environ), assignment, [p.stem for p in notebooks], students)
    tests = set()
    for src in sorted((root / "solutions" / assignment).glob("*.ipynb")):
        for cell in read_notebook(src).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                tests.add(meta.get("grade_id"))
    for sid, st in students.items():
        for nb_path in notebooks:
            graded = root / "grading" / "autograded" / sid / assignment / nb_path.name
            if graded.exists():
                st.autograded = True
                for cell in read_notebook(graded).cells:
                    gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                    if gid in st.cells:
                        st.cells[gid].output = _cell_output(cell)
            fb = root / "grading" / "feedback" / sid / assignment / (nb_path.stem + ".html")
            if fb.exists():  # once per notebook, this student's own
                st.feedback_text += html_to_text(fb.read_text(encoding="utf-8"))
        for gid, c in st.cells.items():
            c.is_test = gid in tests
    return CourseRun(root=root, assignment=assignment, students=students, logs=logs, seconds=seconds,
                     grades_csv=csv_rows)


def _write(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def gradebook_url(root, env: Mapping[str, str] | None = None) -> str:
    """The gradebook the course at ``root`` uses: ``NBGRADER_DB_URL`` of ``env``, else its SQLite file
    (as ``nbgrader_config.py`` decides)."""
    url = (env if env is not None else os.environ).get("NBGRADER_DB_URL")
    return url or "sqlite:///" + str(Path(root) / "grading" / "gradebook.db")


def _read_gradebook(url: str, assignment: str, notebook_names, students: dict[str, StudentGrades]) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url, course_id="lecture_ae") as gb:
        for sid, st in students.items():
            for name in notebook_names:
                try:
                    sub = gb.find_submission_notebook(name, assignment, sid)
                except MissingEntry:
                    continue
                for g in sub.grades:
                    st.cells[g.name] = GradedCell(g.name, g.score if not g.needs_manual_grade else None,
                                                  float(g.max_score), bool(g.needs_manual_grade))


def validate(notebook, *, cwd, invert: bool = False, env=None) -> tuple[int, str]:
    """``nbgrader validate [--invert] notebook``: (exit status, output).

    ``validate`` exits 0 even when tests fail: read the output ("Success! ...",
    "VALIDATION FAILED ON ...", "NOTEBOOK PASSED ON ...").
    """
    args = ["validate", str(notebook)] + (["--invert"] if invert else [])
    p = run_nbgrader(args, cwd=cwd, env=_env(env))
    return p.returncode, _ANSI.sub("", (p.stdout or "") + (p.stderr or ""))
