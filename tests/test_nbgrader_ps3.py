"""End to end: the real nbgrader command line grades ps3 (shortcut connections and U-Net) in a temporary course.

One autograde run grades every student below; the tests then read the gradebook, the
autograded notebooks, the feedback HTML and grades.csv (pipeline and assertions shared
with ps1 and ps2: lecture_ae.grading.pipeline, tests/nbgrader_harness.py).  The checks
alone, with many more wrong functions, are tested in tests/test_grading_ps3.py.
"""
from __future__ import annotations

import pytest

import hostile
from lecture_ae.grading.pipeline import chain, fill_from_source, replace_solution
from nbgrader_harness import (  # noqa: F401 (course_root, corpus, fingerprint: fixtures)
    assert_hostile_corpus,
    corpus,
    course_root,
    fingerprint,
    grade_with_corpus,
    assert_grades_csv,
    assert_loses_points,
    assert_reference_callers_score_zero,
    assert_release_hides,
    assert_release_matches,
    assert_release_scores_zero,
    assert_solution_full_marks,
    assert_validate,
    wrong_students,
)

A = "ps3_unet"
POINTS = {"test_crop_and_concat": 3, "test_iou": 3}
SOLUTION = fill_from_source(A)
SPEC = hostile.spec(A)


def _student(**cells):
    """The solution, with the given solution cells (by grade id) replaced."""
    return chain(SOLUTION, *(replace_solution(gid, src) for gid, src in cells.items()))


_CC = ("def crop_and_concat(skip, x):\n"
       "    H, W = x.shape[-2:]\n"
       "    top, left = {top}, {left}\n"
       "    crop = skip[:, :, top:top + H, left:left + W]\n"
       "    return torch.cat({parts}, dim=1)")
_CENTER = dict(top="(skip.shape[-2] - H) // 2", left="(skip.shape[-1] - W) // 2", parts="[crop, x]")
_IOU = ("def iou(pred, target):\n"
        "    p, t = {p}, target > 0.5\n"
        "    inter = (p * t).sum()\n"
        "    return float({formula})")

# Three typical wrong implementations of every function: student wrong_k has mistake k in both.
WRONG = {
    "crop_and_concat": [
        (_CC.format(**{**_CENTER, "top": "0", "left": "0"}), "likely mistake: the crop starts at the top-left corner"),
        (_CC.format(**{**_CENTER, "top": "(skip.shape[-2] - H + 1) // 2", "left": "(skip.shape[-1] - W + 1) // 2"}),
         "likely mistake: the crop is off by one row or column"),
        (_CC.format(**{**_CENTER, "parts": "[x, crop]"}), "likely mistake: x's channels come first"),
    ],
    "iou": [
        (_IOU.format(p="pred", formula="inter / (p + t - p * t).sum()"),
         "likely mistake: the predicted probabilities are used as they are"),
        (_IOU.format(p="pred > 0.5", formula="2 * inter / (p.sum() + t.sum())"),
         "likely mistake: this is the Dice coefficient"),
        (_IOU.format(p="pred > 0.5", formula="inter / (p.sum() + t.sum())"),
         "likely mistake: the union is |P| + |T|, which counts the intersection twice"),
    ],
}
BROKEN = _student(
    # trims a row (column) on each side until the sizes match: never stops when the difference is odd
    crop_and_concat="def crop_and_concat(skip, x):\n"
                    "    while skip.shape[-2] != x.shape[-2] or skip.shape[-1] != x.shape[-1]:\n"
                    "        if skip.shape[-2] != x.shape[-2]:\n"
                    "            skip = skip[:, :, 1:-1]\n"
                    "        if skip.shape[-1] != x.shape[-1]:\n"
                    "            skip = skip[:, :, :, 1:-1]\n"
                    "    return torch.cat([skip, x], dim=1)",
    # right on the visible checks, raises ZeroDivisionError for two empty masks (a hidden check)
    iou="def iou(pred, target):\n    p, t = pred > 0.5, target > 0.5\n    return int((p & t).sum()) / int((p | t).sum())",
)
CHEATER = _student(
    crop_and_concat="from lecture_ae.models.unet import crop_and_concat",
    iou="import lecture_ae.metrics\n\ndef iou(pred, target):\n    return lecture_ae.metrics.iou(pred > 0.5, target > 0.5)",
)


@pytest.fixture(scope="module")
def run(course_root, corpus, fingerprint):
    submissions = {"solution": SOLUTION, "release": None, "broken": BROKEN, "cheater": CHEATER}
    submissions.update(wrong_students(_student, WRONG))
    return grade_with_corpus(A, submissions, course_root, corpus)


def test_exercises_are_what_generate_assignment_makes(run):
    assert_release_matches(run)


def test_release_hides_solutions_and_hidden_tests(run):
    assert_release_hides(run, "torch.cat([skip[:, :, top", "(p & t).sum() / union", "the decoder has to")


def test_solution_scores_full_marks(run):
    assert sum(POINTS.values()) == 6
    graded = assert_solution_full_marks(run, POINTS, {"answer_ablations": 3}, figure=False)
    assert "merged: (1, 128, 104, 104)" in graded and "Otsu's threshold on 8 cell images: IoU = 0." in graded


def test_unmodified_release_scores_zero(run):
    assert_release_scores_zero(run, WRONG)


def test_validate_passes_the_source_and_invert_passes_the_release(run):
    assert_validate(run)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("function", list(WRONG))
def test_typical_mistakes_lose_points_with_a_message(run, function, k):
    _, phrase = WRONG[function][k]
    assert_loses_points(run, f"wrong_{k + 1}", f"test_{function}", phrase)


def test_an_infinite_loop_and_a_hidden_exception_lose_their_parts_only(run):
    st = run.students["broken"]
    assert st.autograded
    assert_loses_points(run, "broken", "test_crop_and_concat", "did not finish within the time limit")
    assert "iou: all 2 visible checks passed" in st.output("test_iou")  # the exception comes from a hidden check
    assert_loses_points(run, "broken", "test_iou", "raised ZeroDivisionError", "both masks empty")
    assert st.test_score == 0
    # the loop was stopped by the check's time limit, not by the cell's time limit
    graded = (run.root / "grading" / "autograded" / "broken" / A / f"{A}.ipynb").read_text()
    assert "(NBGRADER_EXECUTE_TIMEOUT)" not in graded and "the cell did not finish within" not in graded


def test_calling_the_reference_scores_zero(run):
    assert_reference_callers_score_zero(run, WRONG)


def test_hostile_submissions_earn_nothing_and_see_no_hidden_test(run, corpus, fingerprint):
    assert_hostile_corpus(run, SPEC, corpus, fingerprint)


def test_grades_csv_has_every_student(run, corpus):
    assert_grades_csv(run, {**hostile.expected_scores(SPEC, corpus), **{"solution": 6}})
