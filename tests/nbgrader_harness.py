"""Assertions shared by the end-to-end nbgrader tests of every assignment (tests/test_nbgrader_ps*.py).

The heavy lifting (temporary course, real ``nbgrader`` command line, gradebook) is
:func:`lecture_ae.grading.pipeline.grade_submissions`; this module adds the checks
every assignment repeats, so that a new assignment's e2e test stays short::

    from nbgrader_harness import (assert_solution_full_marks, assert_release_scores_zero,
                                  assert_loses_points, assert_reference_callers_score_zero,
                                  assert_grades_csv, assert_release_matches, assert_validate)
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import hostile
from lecture_ae.grading.pipeline import REPO_ROOT, CourseRun, grade_submissions, read_notebook, validate

EXECUTE_TIMEOUT = 40  # s per cell in the test courses (default 120); generous: a busy CI machine is slow
CHECK_LIMIT = 8  # s per call of a student's function (default 10)
WORKERS = 3  # Dask workers of a test course: the hostile students' time limits overlap with the others' work


# Fixtures of the end-to-end modules (imported there; the module defines SPEC = hostile.spec(A)).
@pytest.fixture(scope="module")
def course_root(tmp_path_factory):
    return tmp_path_factory.mktemp("course")


@pytest.fixture(scope="module")
def corpus(request, course_root):
    return hostile.hostile_students(request.module.SPEC, course_root)


@pytest.fixture(scope="module")
def fingerprint():
    return hostile.package_fingerprint()


def grade_with_corpus(assignment: str, submissions: dict, course_root, corpus: dict, **kwargs) -> CourseRun:
    """One real autograde run of ``submissions`` and the hostile corpus, with the test courses' limits."""
    students = dict(submissions)
    students.update(corpus)
    return grade_submissions(assignment, students, root=course_root, timeout=EXECUTE_TIMEOUT,
                             check_time_limit=CHECK_LIMIT, env={"LECTURE_AE_CELL_TIME_LIMIT": str(EXECUTE_TIMEOUT)},
                             workers=WORKERS, **kwargs)

# Cell metadata that nbgrader or Jupyter may change without changing the assignment.
_VOLATILE_NB_META = {"language_info", "widgets", "toc", "varInspector", "celltoolbar", "vscode"}
_VOLATILE_CELL_META = {"execution", "collapsed", "scrolled", "jupyter", "tags", "editable", "deletable", "trusted"}


def normalized_notebook(path) -> dict:
    """The content of a notebook that matters to students and graders, as plain JSON data."""
    nb = read_notebook(path)
    cells = []
    for cell in nb.cells:
        meta = {k: v for k, v in cell.metadata.items() if k not in _VOLATILE_CELL_META}
        cells.append({"cell_type": cell.cell_type, "source": cell.source, "metadata": meta,
                      "outputs": cell.get("outputs", [])})
    meta = {k: v for k, v in nb.metadata.items() if k not in _VOLATILE_NB_META}
    return json.loads(json.dumps({"metadata": meta, "cells": cells, "nbformat": nb.nbformat}))


def assert_release_matches(run: CourseRun, repo=REPO_ROOT) -> None:
    """The repository's exercises/<assignment>/ is exactly what generate_assignment made from solutions/."""
    made = run.root / "exercises" / run.assignment
    committed = Path(repo) / "exercises" / run.assignment
    made_files = sorted(p.relative_to(made).as_posix() for p in made.rglob("*") if p.is_file())
    committed_files = sorted(p.relative_to(committed).as_posix() for p in committed.rglob("*")
                             if p.is_file() and ".ipynb_checkpoints" not in p.parts)
    assert made_files == committed_files, (
        f"exercises/{run.assignment} holds {committed_files}, generate_assignment makes {made_files}: "
        f"run `make release ASSIGNMENT={run.assignment}` and commit")
    for rel in made_files:
        if rel.endswith(".ipynb"):
            a, b = normalized_notebook(made / rel), normalized_notebook(committed / rel)
            for i, (ca, cb) in enumerate(zip(a["cells"], b["cells"])):
                assert ca == cb, (f"exercises/{run.assignment}/{rel} cell {i} differs from what "
                                  f"generate_assignment makes: run `make release ASSIGNMENT={run.assignment}`")
            assert a == b, f"exercises/{run.assignment}/{rel} is out of date: run `make release ASSIGNMENT={run.assignment}`"
        else:
            assert (made / rel).read_bytes() == (committed / rel).read_bytes(), f"exercises/{run.assignment}/{rel} differs"


def assert_full_marks(run: CourseRun, student: str) -> None:
    st = run.students[student]
    assert st.autograded, f"{student} was not autograded:\n{run.log('autograde')[-3000:]}"
    tests = st.tests()
    assert tests, "no autograder cells found"
    for gid, cell in tests.items():
        assert cell.score == cell.max_score, f"{student} got {cell.score}/{cell.max_score} on {gid}:\n{cell.output}"


def assert_zero_tests(run: CourseRun, student: str) -> None:
    st = run.students[student]
    for gid, cell in st.tests().items():
        assert cell.score == 0, f"{student} got {cell.score} points on {gid}:\n{cell.output}"


def assert_loses_points(run: CourseRun, student: str, grade_id: str, *phrases: str) -> None:
    """``student`` lost points on ``grade_id`` and both the cell output and the feedback name the problem."""
    st = run.students[student]
    cell = st.cells[grade_id]
    assert cell.score is not None and cell.score < cell.max_score, (
        f"{student} kept {cell.score}/{cell.max_score} points on {grade_id}:\n{cell.output}")
    for phrase in phrases:
        assert phrase in cell.output, f"{student}/{grade_id}: {phrase!r} not in the message:\n{cell.output}"
        assert phrase in " ".join(st.feedback_text.split()), f"{student}/{grade_id}: {phrase!r} not in the feedback"


def assert_validate(run: CourseRun) -> None:
    """`nbgrader validate` passes the source and `--invert` passes the release (both exit 0 either way)."""
    for src in sorted((run.root / "solutions" / run.assignment).glob("*.ipynb")):
        rc, out = validate(src, cwd=run.root)
        assert rc == 0 and "Success! Your notebook passes all the tests." in out, out[-3000:]
        rel = run.root / "exercises" / run.assignment / src.name
        rc, out = validate(rel, cwd=run.root, invert=True)
        assert rc == 0 and "Success! The notebook does not pass any tests." in out, out[-3000:]


def wrong_students(make_student, wrong: dict) -> dict:
    """Students ``wrong_1``, ``wrong_2``, ...: student ``wrong_k`` makes mistake k (``wrong[function][k - 1][0]``,
    the code of its solution cell) in every function at once; ``make_student(**cells)`` builds the notebook."""
    n = min(len(v) for v in wrong.values())
    return {f"wrong_{k + 1}": make_student(**{fn: wrong[fn][k][0] for fn in wrong}) for k in range(n)}


def assert_release_hides(run: CourseRun, *secrets: str) -> None:
    """The release is the notebook alone (no code file of the source folder) and shows no solution,
    hidden test, hidden edge case or any of ``secrets``."""
    release = run.root / "exercises" / run.assignment
    assert sorted(p.name for p in release.iterdir()) == [f"{run.assignment}.ipynb"]
    text = (release / f"{run.assignment}.ipynb").read_text()
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "edge_cases=True") + secrets:
        assert secret not in text, f"the release shows {secret!r}"


def assert_solution_full_marks(run: CourseRun, points: dict, manual: dict, *, figure: bool = True,
                               student: str = "solution") -> str:
    """The solution scores ``points`` (grade id -> points) on every autograded cell, the hidden
    parts ran, the manually graded cells (grade id -> points) wait for a grader and (``figure``)
    the autograded notebook keeps its figure.  Returns the autograded notebook's text."""
    assert_full_marks(run, student)
    st = run.students[student]
    assert {gid: c.max_score for gid, c in st.tests().items()} == points
    assert st.test_score == sum(points.values())
    for gid in points:
        assert "hidden checks passed" in st.output(gid), f"the hidden part of {gid} did not run:\n{st.output(gid)}"
    for gid, max_score in manual.items():
        assert st.cells[gid].needs_manual_grade and st.cells[gid].max_score == max_score, gid
    graded = (run.root / "grading" / "autograded" / student / run.assignment / f"{run.assignment}.ipynb").read_text()
    assert not figure or '"image/png"' in graded, "the autograded notebook lost its figure"
    return graded


def assert_release_scores_zero(run: CourseRun, functions, student: str = "release") -> None:
    """The unmodified release scores 0 in total, and each autograder cell says its function is missing."""
    assert_zero_tests(run, student)
    st = run.students[student]
    assert st.score == 0  # untouched manual answers score 0 without a grader
    for fn in functions:
        assert f"{fn} is not implemented yet" in st.output(f"test_{fn}")


def assert_reference_callers_score_zero(run: CourseRun, functions, student: str = "cheater") -> None:
    """A student whose functions call ``lecture_ae`` gets 0 on each part, with a message saying so."""
    for fn in functions:
        assert_loses_points(run, student, f"test_{fn}", "calls the reference implementation")
    assert_zero_tests(run, student)


def assert_grades_csv(run: CourseRun, scores: dict, default: float = 0) -> None:
    """grades.csv has a row for every student, with ``scores[student]`` (else ``default``) as the raw score."""
    rows = {r["student_id"]: r for r in run.grades_csv}
    assert set(rows) == set(run.students)
    for sid in run.students:
        assert float(rows[sid]["raw_score"]) == scores.get(sid, default), (sid, rows[sid])


def assert_hostile_corpus(run: CourseRun, s, students: dict, fingerprint_before: dict) -> None:
    """The corpus of tests/hostile.py: exact scores, nothing hidden in what students get back, no file of
    the course or the package changed, every other student graded."""
    from hostile import expected_scores, hidden_lines, package_fingerprint

    for sid, score in expected_scores(s, students).items():
        st = run.students[sid]
        assert st.autograded, f"{sid} was not autograded:\n{run.log('autograde')[-3000:]}"
        got = {gid: c.score for gid, c in st.tests().items()}
        assert st.test_score == score, (sid, got, {gid: c.output[-600:] for gid, c in st.tests().items()})
    secrets = hidden_lines(s) + ["BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "WROTE THE GRADEBOOK", "WROTE THE PACKAGE",
                                 "WROTE INTO TORCH"]
    for sid, st in run.students.items():
        graded = run.root / "grading" / "autograded" / sid / run.assignment / f"{run.assignment}.ipynb"
        texts = {"feedback": " ".join(st.feedback_text.split())}
        if graded.exists():
            texts["autograded notebook"] = graded.read_text()
        for where, text in texts.items():
            for secret in secrets:
                assert secret not in text, f"{sid}: {secret!r} in the {where}"
        for gid, cell in st.tests().items():  # a hidden part's message shows no input or value
            if "hidden check" in cell.output and " failed." in cell.output:
                hidden_part = cell.output[cell.output.index("hidden check"):]
                for word in ("  input:", "  expected:", "  got:", "  difference:"):
                    assert word not in hidden_part, f"{sid}/{gid}: {word!r} in a hidden message:\n{cell.output}"
    after = package_fingerprint()
    changed = sorted(k for k in set(after) | set(fingerprint_before) if after.get(k) != fingerprint_before.get(k))
    assert not changed, f"a submission changed the installed package: {changed}"
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(run.root / "grading" / "gradebook.db"), course_id="lecture_ae") as gb:
        for sub in gb.find_assignment(run.assignment).submissions:
            for nb in sub.notebooks:
                for g in nb.grades:
                    assert not g.extra_credit, f"{sub.student_id} has extra credit on {g.name}"
    st = run.students["ipython_hooks"]
    assert any("score set by the trusted grader" in c.output for c in st.tests().values()), \
        "the kernel's run (checks turned into pass) and the trusted verdict differ: the output must say so"
    # the loops: a top-level loop that swallows KeyboardInterrupt is stopped after the cell limit (and not
    # run again in the kernel), one inside a function after the call limit
    graded = (run.root / "grading" / "autograded" / "killer_1" / run.assignment / f"{run.assignment}.ipynb").read_text()
    assert "the cell did not finish within" in graded
    killers = [c.output for sid, st in run.students.items() if sid.startswith("killer_") for c in st.tests().values()]
    for phrase in ("did not finish within the time limit", "the process running your code"):
        assert any(phrase in out for out in killers), f"no killer's message says {phrase!r}"
