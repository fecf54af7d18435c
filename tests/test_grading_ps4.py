"""The ps4 checks (anomaly detection) with right and wrong functions, without nbgrader."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lecture_ae.grading import CheckFailed
from lecture_ae.grading import ps4
from lecture_ae.tasks import anomaly as A


# ------------------------------------------------------------- right implementations
def anomaly_map(x, x_hat):
    return ((x - x_hat) ** 2).sum(dim=1)


def image_score(amap, fraction=0.01):
    N, H, W = amap.shape
    k = math.ceil(fraction * H * W)  # the plain formula, without the reference's guard against rounding
    return amap.reshape(N, H * W).topk(k, dim=1).values.mean(dim=1)


def choose_threshold(scores_good_val, max_fpr=0.05):
    m = math.floor(max_fpr * len(scores_good_val))
    return torch.sort(scores_good_val, descending=True).values[m]


def flag_defects(scores_val, scores_test, max_fpr=0.05):
    return scores_test > choose_threshold(scores_val, max_fpr)


def anomaly_map_numpy(x, x_hat):
    return torch.from_numpy(np.sum((x.numpy() - x_hat.numpy()) ** 2, axis=1))


def image_score_sorted(amap, fraction=0.01):
    k = math.ceil(fraction * amap.shape[1] * amap.shape[2])
    return torch.sort(amap.flatten(1), dim=1, descending=True).values[:, :k].mean(dim=1)


def choose_threshold_kthvalue(scores_good_val, max_fpr=0.05):
    n = scores_good_val.numel()
    return float(torch.kthvalue(scores_good_val, n - int(max_fpr * n)).values)


RIGHT = {
    ps4.check_anomaly_map: [anomaly_map, anomaly_map_numpy],
    ps4.check_image_score: [image_score, image_score_sorted],
    ps4.check_choose_threshold: [choose_threshold, choose_threshold_kthvalue],
    ps4.check_flag_defects: [flag_defects],
}

# The hidden calls of solutions/ps4_anomaly (keep in step with the notebook).
HIDDEN = {
    ps4.check_anomaly_map: dict(seeds=(11, 12), shapes=((4, 2, 3, 7), (1, 3, 8, 8), (2, 1, 5, 5))),
    ps4.check_image_score: dict(seeds=(21, 22), shapes=((2, 12, 12), (4, 7, 9)), fractions=(0.02, 0.3, None)),
    ps4.check_choose_threshold: dict(seeds=(31, 32), sizes=(30, 18, 50), max_fprs=(0.1, 0.2, 0.05)),
    ps4.check_flag_defects: dict(seeds=(41, 42), sizes=((30, 25), (24, 10), (60, 40)), max_fprs=(0.1, 0.05, 0.2)),
}


@pytest.mark.parametrize("check", list(RIGHT), ids=lambda c: c.__name__)
def test_right_implementations_pass_visible_and_hidden_checks(check, capsys):
    for fn in RIGHT[check]:
        assert check(fn) is None  # a value would be read by nbgrader as partial credit
        assert check(fn, edge_cases=True, **HIDDEN[check]) is None
        assert check(fn, seeds=(5, 6, 7), edge_cases=True) is None
    out = capsys.readouterr().out
    assert "visible checks passed" in out and "hidden checks passed" in out


def test_the_checks_use_the_reference_of_the_chapter():
    g = torch.Generator().manual_seed(0)
    x, x_hat = torch.rand(3, 2, 5, 5, generator=g, dtype=torch.float64), torch.rand(3, 2, 5, 5, generator=g,
                                                                                      dtype=torch.float64)
    torch.testing.assert_close(ps4._ref_anomaly_map(x, x_hat), A.anomaly_map(x, x_hat, "l2"))
    torch.testing.assert_close(ps4._ref_anomaly_map(x, x_hat), anomaly_map(x, x_hat), rtol=0, atol=0)
    amap = A.anomaly_map(x, x_hat)
    torch.testing.assert_close(ps4._ref_image_score(amap, 0.1), A.image_score(amap, 0.1))
    s = torch.tensor([0.3, 0.9, 0.1, 0.7, 0.5], dtype=torch.float64)
    assert ps4._ref_choose_threshold(s, 0.2) == A.choose_threshold(s, 0.2) == 0.7  # m = 1: the second largest
    flags = ps4._ref_flag_defects(s, torch.tensor([0.69, 0.7, 0.71], dtype=torch.float64), 0.2)
    assert flags.tolist() == [False, False, True]  # strictly greater


def test_flag_cases_tie_around_rank_m():
    """Thresholds off by one rank give the same flags: a wrong choose_threshold is not penalised twice."""
    gen = torch.Generator().manual_seed(0)
    for n_val, n_test, f in [(40, 20, 0.1), (20, 12, 0.25), (10, 9, 0.0), (30, 15, 0.3), (50, 3, 0.05), (7, 5, 0.1),
                             (60, 40, 0.2)]:
        case = ps4._flag_case(gen, n_val, n_test, f, label="")
        val, test = case.args
        assert val.shape == (n_val,) and test.shape == (n_test,)
        for scores, tie in ((val, 1.5), (test, 2.2)):
            n, m = len(scores), math.floor(f * len(scores))
            desc = torch.sort(scores, descending=True).values
            for i in range(max(m - 1, 0), min(m + 2, n)):
                assert desc[i] == tie, (n, f, i, desc)
            for q in ("linear", "lower", "higher", "nearest"):
                assert float(torch.quantile(scores, 1 - f, interpolation=q)) == tie
        if n_test >= 9:
            assert (test == 1.5).any() and ((test > 1.5) & (test < 2.2)).any() and (test < 1.5).any()

        def off_by_one(scores_val, scores_test, max_fpr=0.05):
            m = math.floor(max_fpr * len(scores_val))
            return scores_test > torch.sort(scores_val, descending=True).values[max(m - 1, 0)]

        ps4.check_flag_defects(off_by_one, sizes=((n_val, n_test),), max_fprs=(f,))


# ------------------------------------------------------------------- wrong functions
_MISTAKE_LISTS = {ps4.check_anomaly_map: ps4._MAP_MISTAKES, ps4.check_image_score: ps4._SCORE_MISTAKES,
                  ps4.check_choose_threshold: ps4._THRESHOLD_MISTAKES, ps4.check_flag_defects: ps4._FLAG_MISTAKES}
_ALL_MISTAKES = [(check, k) for check, mistakes in _MISTAKE_LISTS.items() for k in range(len(mistakes))]


@pytest.mark.parametrize("check,k", _ALL_MISTAKES, ids=[f"{c.__name__}-{k}" for c, k in _ALL_MISTAKES])
def test_every_known_mistake_is_caught_by_the_visible_checks_and_named(check, k, monkeypatch):
    """Each listed mistake fails the visible checks with its own description, or with that of an earlier
    mistake that gives the same result on the failing case (the first match is reported)."""
    # the mistakes live in lecture_ae.grading.ps4 and use its helpers: switch the guard off for them
    monkeypatch.setattr(check, "guard_packages", ())
    mistakes = _MISTAKE_LISTS[check]
    with pytest.raises(CheckFailed) as info:
        check(mistakes[k].fn)
    msg = str(info.value)
    assert any("likely mistake: " + m.description in msg for m in mistakes[: k + 1]), msg


def _student_threshold(choose):
    """flag_defects of a student whose choose_threshold is ``choose``."""
    return lambda scores_val, scores_test, max_fpr=0.05: scores_test > choose(scores_val, max_fpr)


WRONG = [
    (ps4.check_anomaly_map, lambda x, x_hat: (x - x_hat).abs().sum(dim=1), "the error is not squared"),
    (ps4.check_anomaly_map, lambda x, x_hat: ((x - x_hat) ** 2).sum(dim=0), "summed over the batch"),
    (ps4.check_anomaly_map, lambda x, x_hat: ((x - x_hat) ** 2).mean(dim=1), "averaged over the channels"),
    (ps4.check_anomaly_map, lambda x, x_hat: ((x - x_hat) ** 2).squeeze(1), "the channel dimension is kept"),
    (ps4.check_anomaly_map, lambda x, x_hat: ((x - x_hat) ** 2)[:, 0], "only the first channel"),
    (ps4.check_anomaly_map, lambda x, x_hat: x.sub_(x_hat).pow_(2).sum(dim=1), "changed its input x in place"),
    (ps4.check_image_score, lambda amap, fraction=0.01: amap.mean(dim=(1, 2)), "the mean of the whole map"),
    (ps4.check_image_score, lambda amap, fraction=0.01: amap.flatten(1).max(dim=1).values, "the maximum of the map"),
    (ps4.check_image_score, lambda amap, fraction=0.01: amap.flatten(1).topk(
        int(fraction * amap[0].numel()), dim=1).values.mean(dim=1), "k is rounded down"),
    (ps4.check_image_score, lambda amap, fraction=0.01: amap.flatten().topk(
        math.ceil(fraction * amap.numel())).values.mean(), "one number for the whole batch"),
    (ps4.check_image_score, lambda amap, fraction=0.01: torch.sort(amap.flatten(1), dim=1).values[
        :, :math.ceil(fraction * amap[0].numel())].mean(dim=1), "the k smallest values"),
    (ps4.check_choose_threshold, lambda s, max_fpr=0.05: torch.quantile(s, 1 - max_fpr), "a quantile of the scores"),
    (ps4.check_choose_threshold, lambda s, max_fpr=0.05: torch.sort(s).values[int(max_fpr * len(s))],
     "sorted in increasing order"),
    (ps4.check_choose_threshold, lambda s, max_fpr=0.05: torch.sort(s, descending=True).values[
        max(int(max_fpr * len(s)) - 1, 0)], "the m-th largest score instead of the (m+1)-th"),
    (ps4.check_choose_threshold, lambda s, max_fpr=0.05: s.max(), "max_fpr is ignored"),
    (ps4.check_flag_defects, lambda v, t, max_fpr=0.05: t > choose_threshold(t, max_fpr), "chosen on the test scores"),
    (ps4.check_flag_defects, lambda v, t, max_fpr=0.05: t >= choose_threshold(v, max_fpr), ">= instead of >"),
    (ps4.check_flag_defects, lambda v, t, max_fpr=0.05: t < choose_threshold(v, max_fpr), "the flags are inverted"),
    (ps4.check_flag_defects, lambda v, t, max_fpr=0.05: t > choose_threshold(v), "max_fpr is not passed on"),
    (ps4.check_flag_defects, lambda v, t, max_fpr=0.05: choose_threshold(v, max_fpr),
     "returned a single number (the threshold?)"),
    (ps4.check_flag_defects, lambda v, t, max_fpr=0.05: (t - choose_threshold(v, max_fpr)).clamp(min=0),
     "not 0/1"),
]


@pytest.mark.parametrize("check,wrong,phrase", WRONG, ids=[f"{c.__name__}-{k}" for k, (c, _, _) in enumerate(WRONG)])
def test_typical_mistakes_fail_with_a_message_naming_the_problem(check, wrong, phrase):
    with pytest.raises(CheckFailed) as info:
        check(wrong)
    assert phrase in str(info.value), str(info.value)


def test_hidden_edge_cases_catch_what_the_visible_cases_miss():
    def k_plus_one_when_integer(amap, fraction=0.01):  # k = floor(f H W) + 1: ceil except for integer f H W
        k = math.floor(fraction * amap.shape[1] * amap.shape[2]) + 1
        return amap.flatten(1).topk(min(k, amap[0].numel()), dim=1).values.mean(dim=1)

    def empty_threshold_fails(s, max_fpr=0.05):  # max_fpr = 0 gives an empty slice
        return torch.sort(s, descending=True).values[: math.floor(max_fpr * len(s)) + 1][-1:].sum() / \
            (max_fpr > 0)

    def mean_over_channels_if_4(x, x_hat):  # only wrong for C = 4
        e = (x - x_hat) ** 2
        return e.mean(dim=1) if x.shape[1] == 4 else e.sum(dim=1)

    for check, fn in [(ps4.check_image_score, k_plus_one_when_integer),
                      (ps4.check_choose_threshold, empty_threshold_fails),
                      (ps4.check_anomaly_map, mean_over_channels_if_4)]:
        check(fn)  # the visible cases pass
        with pytest.raises(CheckFailed):
            check(fn, edge_cases=True, **HIDDEN[check])


def test_flag_defects_uses_the_students_own_threshold_and_forgives_a_wrong_rank():
    def off_by_one_threshold(s, max_fpr=0.05):
        m = math.floor(max_fpr * len(s))
        return torch.sort(s, descending=True).values[max(m - 1, 0)]

    with pytest.raises(CheckFailed, match="the m-th largest score"):
        ps4.check_choose_threshold(off_by_one_threshold)
    ps4.check_flag_defects(_student_threshold(off_by_one_threshold))  # not penalised a second time
    ps4.check_flag_defects(_student_threshold(off_by_one_threshold), edge_cases=True, **HIDDEN[ps4.check_flag_defects])
    for rule in (off_by_one_threshold, lambda s, max_fpr=0.05: torch.quantile(s, 1 - max_fpr), choose_threshold):
        with pytest.raises(CheckFailed, match="likely mistake: the threshold is chosen on the test scores"):
            ps4.check_flag_defects(lambda v, t, max_fpr=0.05: t > rule(t, max_fpr))  # whatever the student's rule
    with pytest.raises(CheckFailed, match="flag_defects raised NotImplementedError|is not implemented yet"):
        ps4.check_flag_defects(_student_threshold(lambda s, max_fpr=0.05: (_ for _ in ()).throw(NotImplementedError())))


def test_calling_the_reference_scores_zero():
    from lecture_ae.tasks.anomaly import choose_threshold as ref_threshold

    cases = [
        (ps4.check_anomaly_map, lambda x, x_hat: A.l2_map(x, x_hat)),
        (ps4.check_anomaly_map, lambda x, x_hat: A.anomaly_map(x, x_hat)),
        (ps4.check_image_score, lambda amap, fraction=0.01: A.image_score(amap, fraction)),
        (ps4.check_choose_threshold, lambda s, max_fpr=0.05: ref_threshold(s, max_fpr)),
        (ps4.check_choose_threshold, lambda s, max_fpr=0.05: ps4._ref_choose_threshold(s, max_fpr)),  # the checks too
        (ps4.check_flag_defects, _student_threshold(ref_threshold)),
    ]
    for check, fn in cases:
        with pytest.raises(CheckFailed, match="calls the reference implementation"):
            check(fn)
    ps4.check_choose_threshold(choose_threshold)  # everything is restored afterwards
    assert A.choose_threshold(torch.tensor([1.0, 2.0]), 0.0) == 2.0


def test_exceptions_and_wrong_types_are_reported():
    with pytest.raises(CheckFailed, match="is not implemented yet"):
        ps4.check_anomaly_map(lambda x, x_hat: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(CheckFailed, match="should return a single number"):
        ps4.check_choose_threshold(lambda s, max_fpr=0.05: torch.sort(s, descending=True).values)
    with pytest.raises(CheckFailed, match="returned None"):
        ps4.check_image_score(lambda amap, fraction=0.01: None)
    with pytest.raises(CheckFailed, match="did not finish within the time limit"):
        ps4.check_image_score(lambda amap, fraction=0.01: [None for _ in iter(int, 1)], limit=0.5)
