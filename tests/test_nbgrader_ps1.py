"""End to end: the real nbgrader command line grades ps1 (sparse coding) in a temporary course.

One autograde run grades every student below (that is what an instructor does, and
it is also the fast way); the tests then read the gradebook, the autograded
notebooks, the feedback HTML and grades.csv.
"""
from __future__ import annotations

import shutil

import pytest

from lecture_ae.grading.pipeline import REPO_ROOT, chain, fill_from_source, replace_solution
import hostile
from nbgrader_harness import (  # noqa: F401 (course_root, corpus, fingerprint: fixtures)
    EXECUTE_TIMEOUT,
    assert_full_marks,
    assert_hostile_corpus,
    corpus,
    course_root,
    fingerprint,
    grade_with_corpus,
    assert_loses_points,
    assert_reference_callers_score_zero,
    assert_release_hides,
    assert_release_matches,
    assert_release_scores_zero,
    assert_validate,
    wrong_students,
)

A = "ps1_sparse_coding"
POINTS = {"test_soft_threshold": 2, "test_l1_objective": 2, "test_ista": 3, "test_update_dictionary": 2}
SOLUTION = fill_from_source(A)
SPEC = hostile.spec(A)


def _student(**cells):
    """The solution, with the given solution cells (by grade id) replaced."""
    return chain(SOLUTION, *(replace_solution(gid, src) for gid, src in cells.items()))


# Three typical wrong implementations of every function: student wrong_k has mistake k in all four
# (each function is self-contained, so one mistake does not spill into another part).
WRONG = {
    "soft_threshold": [
        ("def soft_threshold(x, lam):\n    return torch.clamp(x.abs() - lam, min=0)",
         "likely mistake: the sign is lost"),
        ("def soft_threshold(x, lam):\n    return x * (x.abs() > lam)",
         "likely mistake: hard thresholding"),
        ("def soft_threshold(x, lam):\n    x[x.abs() <= lam] = 0\n    x -= lam * torch.sign(x)\n    return x",
         "changed its input x in place"),
    ],
    "l1_objective": [
        ("def l1_objective(X, W, S, lam, eta):\n"
         "    return ((X - S @ W.T)**2).sum() + lam * S.abs().sum() + eta * (W**2).sum()",
         "likely mistake: the sum over the N samples is not divided by N"),
        ("def l1_objective(X, W, S, lam, eta):\n"
         "    err = torch.linalg.norm(X - S @ W.T, dim=1)\n"
         "    return (err + lam * S.abs().sum(dim=1)).mean() + eta * (W**2).sum()",
         "likely mistake: the reconstruction error is not squared"),
        ("def l1_objective(X, W, S, lam, eta):\n"
         "    return ((X - S @ W.T)**2).sum(dim=1) + lam * S.abs().sum(dim=1) + eta * (W**2).sum()",
         "it should return a single number"),
    ],
    "ista": [
        ("def ista(X, W, lam, n_iter, step=None):\n"
         "    t = 1 / (2 * (W**2).sum()) if step is None else step\n"
         "    S = torch.zeros(X.shape[0], W.shape[1], dtype=X.dtype)\n"
         "    for _ in range(n_iter):\n"
         "        Z = S - t * 2 * (S @ W.T - X) @ W\n"
         "        S = torch.sign(Z) * torch.clamp(Z.abs() - t * lam, min=0)\n"
         "    return S",
         "likely mistake: L uses the Frobenius norm"),
        ("def ista(X, W, lam, n_iter, step=None):\n"
         "    t = 1 / (2 * torch.linalg.matrix_norm(W, ord=2)**2) if step is None else step\n"
         "    S = torch.zeros(X.shape[0], W.shape[1], dtype=X.dtype)\n"
         "    for _ in range(n_iter):\n"
         "        Z = S - t * 2 * (S @ W.T - X) @ W\n"
         "        S = torch.sign(Z) * torch.clamp(Z.abs() - lam, min=0)\n"
         "    return S",
         "likely mistake: the threshold is lam;"),
        ("def ista(X, W, lam, n_iter, step=None):\n"
         "    t = 1 / (2 * torch.linalg.matrix_norm(W, ord=2)**2) if step is None else step\n"
         "    S = torch.zeros(X.shape[0], W.shape[1], dtype=X.dtype)\n"
         "    for _ in range(n_iter + 1):\n"
         "        Z = S - t * 2 * (S @ W.T - X) @ W\n"
         "        S = torch.sign(Z) * torch.clamp(Z.abs() - t * lam, min=0)\n"
         "    return S",
         "likely mistake: one iteration too many"),
    ],
    "update_dictionary": [
        ("def update_dictionary(X, S, eta):\n"
         "    A = S.T @ S + eta * torch.eye(S.shape[1], dtype=X.dtype)\n"
         "    return torch.linalg.solve(A, S.T @ X).T",
         "likely mistake: the ridge term is eta I"),
        ("def update_dictionary(X, S, eta):\n"
         "    A = S.T @ S + X.shape[0] * eta * torch.eye(S.shape[1], dtype=X.dtype)\n"
         "    return torch.linalg.solve(A, S.T @ X)",
         "you returned W^T"),
        ("def update_dictionary(X, S, eta):\n"
         "    return torch.linalg.lstsq(S, X).solution.T",
         "likely mistake: eta is ignored"),
    ],
}

# an infinite loop inside a function: the check's time limit stops it (top-level loops, loops that swallow
# KeyboardInterrupt and other process-level attacks are the killer_* students of tests/hostile.py)
LOOPS = _student(
    ista="def ista(X, W, lam, n_iter, step=None):\n    S = torch.zeros(X.shape[0], W.shape[1], dtype=X.dtype)\n"
         "    k = 0\n    while k < n_iter:\n        S = S + 0.0\n    return S",
)
RAISES = _student(
    l1_objective="raise RuntimeError('I did not finish this part')",
    update_dictionary="def update_dictionary(X, S, eta):\n    n_used = 0\n    return X.T @ S * (1 / n_used)",
)
CHEATER = _student(
    soft_threshold="from lecture_ae.sparse import soft_threshold as _st\n\ndef soft_threshold(x, lam):\n    return _st(x, lam)",
    l1_objective="import lecture_ae.sparse.coding as C\n\ndef l1_objective(X, W, S, lam, eta):\n    return C.l1_objective(X, W, S, lam, eta)",
    ista="def ista(X, W, lam, n_iter, step=None):\n    import lecture_ae.sparse\n    try:\n"
         "        return lecture_ae.sparse.fista(X, W, lam, n_iter=n_iter, step=step)\n"
         "    except Exception:\n        return lecture_ae.sparse.ista(X, W, lam, n_iter=n_iter, step=step)",
    update_dictionary="def update_dictionary(X, S, eta):\n    from lecture_ae.grading import ps1\n"
                      "    return ps1._closed_form(X, S, X.shape[0] * eta)",
)
KILLS_KERNEL = _student(l1_objective="import os\nos._exit(1)")

# A fake `lecture_ae` package and `torch.py` next to the notebook would shadow the real ones in the
# grading kernel (whose working directory is the submission folder) if nbgrader copied them.
FAKE = "def __getattr__(name):\n    return lambda *a, **k: None\n"
CHEATER_FILES = {
    "lecture_ae/__init__.py": FAKE,
    "lecture_ae/grading/__init__.py": FAKE,
    "lecture_ae/grading/ps1.py": FAKE,
    "torch.py": "raise SystemExit('fake torch')\n",
    "notes.txt": "my notes\n",
}


@pytest.fixture(scope="module")
def run(course_root, corpus, fingerprint):
    submissions = {
        "solution": SOLUTION,
        "release": None,
        "loops": LOOPS,
        "raises": RAISES,
        "cheater": CHEATER,
        "kills_kernel": KILLS_KERNEL,
        "corrupt": None,
    }
    submissions.update(wrong_students(_student, WRONG))
    return grade_with_corpus(
        A,
        submissions,
        course_root,
        corpus,
        extra_files={"cheater": CHEATER_FILES, "corrupt": {f"{A}.ipynb": "{ this is not a notebook"}},
        source_files={"instructor_notes.py": "REFERENCE = 'do not hand out'\n"},
    )


def test_exercises_are_what_generate_assignment_makes(run):
    assert_release_matches(run)


def test_release_hides_solutions_hidden_tests_and_code_files(run):
    assert_release_hides(run, "torch.linalg.solve(A, S.T @ X)")


def test_solution_scores_full_marks(run):
    assert_full_marks(run, "solution")
    st = run.students["solution"]
    assert st.test_score == sum(POINTS.values()) == 9
    assert "hidden checks passed" in st.output("test_ista")  # the hidden part ran
    # the manually graded answers wait for a grader; the plot is in the autograded notebook
    assert st.cells["plot_lambda_sweep"].needs_manual_grade and st.cells["answer_lambda"].needs_manual_grade
    graded = (run.root / "grading" / "autograded" / "solution" / A / f"{A}.ipynb").read_text()
    assert '"image/png"' in graded


def test_unmodified_release_scores_zero(run):
    assert_release_scores_zero(run, WRONG)


def test_validate_passes_the_source_and_invert_passes_the_release(run):
    assert_validate(run)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("function", list(WRONG))
def test_typical_mistakes_lose_points_with_a_message(run, function, k):
    _, phrase = WRONG[function][k]
    assert_loses_points(run, f"wrong_{k + 1}", f"test_{function}", phrase)


def test_infinite_loops_are_stopped_and_the_other_parts_graded(run):
    st = run.students["loops"]
    assert st.autograded
    assert_loses_points(run, "loops", "test_ista", "did not finish within the time limit")
    assert st.cells["test_l1_objective"].score == 2 and st.cells["test_update_dictionary"].score == 2
    assert st.cells["test_soft_threshold"].score == 2
    # the plot cell calls the looping ista: the kernel pass stops it after the course's Execute.timeout
    graded = (run.root / "grading" / "autograded" / "loops" / A / f"{A}.ipynb").read_text()
    assert f"did not finish within {EXECUTE_TIMEOUT} s (NBGRADER_EXECUTE_TIMEOUT)" in graded


def test_a_raising_cell_does_not_stop_the_other_parts(run):
    st = run.students["raises"]
    assert st.cells["test_l1_objective"].score == 0
    assert_loses_points(run, "raises", "test_update_dictionary", "raised ZeroDivisionError")
    assert st.cells["test_soft_threshold"].score == 2 and st.cells["test_ista"].score == 3


def test_calling_the_reference_scores_zero_and_submitted_code_files_are_not_used(run):
    assert_reference_callers_score_zero(run, WRONG)
    graded = run.root / "grading" / "autograded" / "cheater" / A
    assert (graded / "notes.txt").exists()  # ordinary files are copied ...
    assert not (graded / "torch.py").exists() and not (graded / "lecture_ae").exists()  # ... code is not
    assert not (graded / "instructor_notes.py").exists()


def test_broken_submissions_do_not_cost_the_others_their_grades(run):
    # nbgrader reports the submission it could not read (exit status 1) and records everyone else; a
    # kernel killed by the notebook is started again, so that submission is graded (its l1_objective
    # cell ends the process before the function is defined: 9 - 2 points)
    log = run.log("autograde")
    assert run.logs["autograde"].returncode != 0
    assert "corrupt" in log
    assert not run.students["corrupt"].autograded
    rows = {r["student_id"]: r for r in run.grades_csv}
    assert set(rows) == set(run.students)
    expected = {"solution": 9, "release": 0, "loops": 6, "raises": 5, "cheater": 0, "kills_kernel": 7}
    for sid, score in expected.items():
        assert float(rows[sid]["raw_score"]) == score, (sid, rows[sid])
        assert run.students[sid].test_score == score
    for k in range(3):
        assert run.students[f"wrong_{k + 1}"].autograded


def test_hostile_submissions_earn_nothing_and_see_no_hidden_test(run, corpus, fingerprint):
    assert_hostile_corpus(run, SPEC, corpus, fingerprint)


def test_config_layout_timeout_and_database(tmp_path, monkeypatch):
    """The repository's nbgrader_config.py, read the way nbgrader reads it, configures nbgrader's Execute."""
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader

    shutil.copy(REPO_ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    monkeypatch.delenv("NBGRADER_DB_URL", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTE_TIMEOUT", "7")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    cd = cfg.CourseDirectory
    assert (cd.root, cd.source_directory, cd.release_directory) == (str(tmp_path), "solutions", "exercises")
    for step in ("submitted", "autograded", "feedback"):
        assert getattr(cd, f"{step}_directory") == f"grading/{step}"
    assert cd.db_url == f"sqlite:///{tmp_path}/grading/gradebook.db" and (tmp_path / "grading").is_dir()
    execute = Execute(config=cfg)
    assert execute.timeout == 7 and execute.interrupt_on_timeout
    assert "*.py" in cd.ignore and "lecture_ae" in cd.ignore
    assert cfg.Autograde.exclude_overwriting == {}

    monkeypatch.setenv("NBGRADER_DB_URL", "postgresql://grader@dbhost/lecture_ae")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    assert cfg.CourseDirectory.db_url == "postgresql://grader@dbhost/lecture_ae"
