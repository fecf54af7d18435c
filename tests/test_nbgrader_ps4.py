"""End to end: the real nbgrader command line grades ps4 (anomaly detection) in a temporary course.

One autograde run grades every student below; the tests then read the gradebook, the
autograded notebooks, the feedback HTML and grades.csv (pipeline and assertions shared
with ps1/ps2: lecture_ae.grading.pipeline, tests/nbgrader_harness.py).
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
    assert_full_marks,
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

A = "ps4_anomaly"
POINTS = {"test_anomaly_map": 2, "test_image_score": 3, "test_choose_threshold": 3, "test_flag_defects": 2}
MANUAL = {"plot_detector": 1, "answer_findings": 2}
SOLUTION = fill_from_source(A)
SPEC = hostile.spec(A)


def _student(**cells):
    """The solution, with the given solution cells (by grade id) replaced."""
    return chain(SOLUTION, *(replace_solution(gid, src) for gid, src in cells.items()))


_MAP = "def anomaly_map(x, x_hat):\n    return {}"
_SCORE = ("def image_score(amap, fraction=0.01):\n    N, H, W = amap.shape\n    k = {k}\n"
          "    return {ret}")
_TOPK = "amap.reshape(N, H * W).topk(k, dim=1).values.mean(dim=1)"
_THRESHOLD = ("def choose_threshold(scores_good_val, max_fpr=0.05):\n"
              "    m = math.floor(max_fpr * len(scores_good_val))\n    return {}")
_FLAGS = "def flag_defects(scores_val, scores_test, max_fpr=0.05):\n    return {}"

# Three typical wrong implementations of every function: student wrong_k has mistake k in all four.
# Each wrong flag_defects is paired with a choose_threshold whose own mistake does not hide it (the
# flag cases tie around rank m; a threshold from an increasing sort is too far off to recognise
# anything else, so wrong_3 returns the threshold itself).
WRONG = {
    "anomaly_map": [
        (_MAP.format("(x - x_hat).abs().sum(dim=1)"), "likely mistake: the error is not squared"),
        (_MAP.format("((x - x_hat) ** 2).sum(dim=0)"), "likely mistake: the error is summed over the batch"),
        (_MAP.format("((x - x_hat) ** 2).squeeze(1)"), "likely mistake: the channel dimension is kept"),
    ],
    "image_score": [
        (_SCORE.format(k="1", ret="amap.mean(dim=(1, 2))"), "likely mistake: the mean of the whole map"),
        (_SCORE.format(k="int(fraction * H * W)", ret=_TOPK), "likely mistake: k is rounded down"),
        (_SCORE.format(k="math.ceil(fraction * amap.numel())", ret="amap.flatten().topk(k).values.mean()"),
         "you return one number for the whole batch"),
    ],
    "choose_threshold": [
        (_THRESHOLD.format("torch.quantile(scores_good_val, 1 - max_fpr)"), "likely mistake: a quantile of the scores"),
        (_THRESHOLD.format("torch.sort(scores_good_val, descending=True).values[max(m - 1, 0)]"),
         "likely mistake: the m-th largest score instead of the (m+1)-th"),
        (_THRESHOLD.format("torch.sort(scores_good_val).values[m]"),
         "likely mistake: the scores are sorted in increasing order"),
    ],
    "flag_defects": [
        (_FLAGS.format("scores_test > choose_threshold(scores_test, max_fpr)"),
         "likely mistake: the threshold is chosen on the test scores"),
        (_FLAGS.format("scores_test >= choose_threshold(scores_val, max_fpr)"), "likely mistake: >= instead of >"),
        (_FLAGS.format("choose_threshold(scores_val, max_fpr)"), "returned a single number (the threshold?)"),
    ],
}

# Correct, written otherwise than the solution: full marks.
OTHER_WAYS = _student(
    anomaly_map="import numpy as np\n\ndef anomaly_map(x, x_hat):\n"
                "    return torch.from_numpy(np.square(x.numpy() - x_hat.numpy()).sum(axis=1))",
    image_score="def image_score(amap, fraction=0.01):\n    k = math.ceil(fraction * amap.shape[1] * amap.shape[2])\n"
                "    return torch.sort(amap.flatten(1), dim=1, descending=True).values[:, :k].mean(dim=1)",
    choose_threshold="def choose_threshold(scores_good_val, max_fpr=0.05):\n    n = len(scores_good_val)\n"
                     "    return float(torch.kthvalue(scores_good_val, n - int(max_fpr * n)).values)",
    flag_defects="def flag_defects(scores_val, scores_test, max_fpr=0.05):\n"
                 "    return ~(scores_test <= choose_threshold(scores_val, max_fpr))",
)
CHEATER = _student(
    anomaly_map="from lecture_ae.tasks.anomaly import l2_map\n\ndef anomaly_map(x, x_hat):\n    return l2_map(x, x_hat)",
    image_score="from lecture_ae.tasks.anomaly import image_score",
    choose_threshold="import lecture_ae.tasks.anomaly as A\n\ndef choose_threshold(scores_good_val, max_fpr=0.05):\n"
                     "    return A.choose_threshold(scores_good_val, max_fpr)",
    flag_defects="from lecture_ae.tasks import anomaly\n\ndef flag_defects(scores_val, scores_test, max_fpr=0.05):\n"
                 "    return scores_test > anomaly.choose_threshold(scores_val, max_fpr)",
)


@pytest.fixture(scope="module")
def run(course_root, corpus, fingerprint):
    submissions = {"solution": SOLUTION, "release": None, "other_ways": OTHER_WAYS, "cheater": CHEATER}
    submissions.update(wrong_students(_student, WRONG))
    return grade_with_corpus(A, submissions, course_root, corpus)


def test_exercises_are_what_generate_assignment_makes(run):
    assert_release_matches(run)


def test_release_hides_solutions_and_hidden_tests(run):
    assert_release_hides(run, "topk(k, dim=1)", "math.floor(max_fpr * n)", "scores_test > t", "Cuts and holes are found")


def test_solution_scores_full_marks(run):
    assert sum(POINTS.values()) == 10
    assert_solution_full_marks(run, POINTS, MANUAL)
    assert "false alarms on the good test tiles" in run.students["solution"].output("plot_detector")


def test_unmodified_release_scores_zero(run):
    assert_release_scores_zero(run, WRONG)


def test_validate_passes_the_source_and_invert_passes_the_release(run):
    assert_validate(run)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("function", list(WRONG))
def test_typical_mistakes_lose_points_with_a_message(run, function, k):
    _, phrase = WRONG[function][k]
    assert_loses_points(run, f"wrong_{k + 1}", f"test_{function}", phrase)


def test_correct_functions_written_otherwise_score_full_marks(run):
    assert_full_marks(run, "other_ways")


def test_calling_the_reference_scores_zero(run):
    assert_reference_callers_score_zero(run, WRONG)


def test_hostile_submissions_earn_nothing_and_see_no_hidden_test(run, corpus, fingerprint):
    assert_hostile_corpus(run, SPEC, corpus, fingerprint)


def test_grades_csv_has_every_student(run, corpus):
    assert_grades_csv(run, {**hostile.expected_scores(SPEC, corpus), **{"solution": 10, "other_ways": 10}})
