r"""Checks for problem set 4 (anomaly detection): one ``check_*`` per function the students write.

Each check compares the student's function with the reference in
:mod:`lecture_ae.tasks.anomaly` on random float64 inputs drawn from ``seeds`` and raises
:class:`~lecture_ae.grading.checks.CheckFailed` with a message for the student at the
first difference.  The autograder cells of ``solutions/ps4_anomaly`` call every check
twice: once with the defaults (the visible tests) and once between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` with other seeds, shapes and
``edge_cases=True``.  While the student's function runs, ``lecture_ae`` is blocked
(:class:`~lecture_ae.grading.guard.ReferenceGuard`): calling the reference scores zero.

* :func:`check_anomaly_map`: ``anomaly_map(x, x_hat)``, (N, C, H, W) -> (N, H, W), the
  squared error summed over the channels, :math:`a_{nuv} = \sum_c (x_{ncuv} - \hat x_{ncuv})^2`
  (:func:`~lecture_ae.tasks.anomaly.l2_map`).
* :func:`check_image_score`: ``image_score(amap, fraction=0.01)``, (N, H, W) -> (N,), the
  mean of the :math:`k = \lceil \text{fraction} \cdot H W \rceil` largest values of each
  image's map (:func:`~lecture_ae.tasks.anomaly.image_score`).
* :func:`check_choose_threshold`: ``choose_threshold(scores_good_val, max_fpr=0.05)``, one
  number: with the :math:`n` scores sorted in decreasing order and
  :math:`m = \lfloor \text{max\_fpr} \cdot n \rfloor`, the :math:`(m+1)`-th largest score
  (``sorted_desc[m]``, 0-based) (:func:`~lecture_ae.tasks.anomaly.choose_threshold`).
* :func:`check_flag_defects`: ``flag_defects(scores_val, scores_test, max_fpr=0.05)``, a
  boolean tensor (N_test,): ``scores_test > choose_threshold(scores_val, max_fpr)``, the
  threshold set on the good *validation* scores and a test image flagged when its score
  is *strictly* greater.  The student's function calls the student's own
  ``choose_threshold``; in every case the validation scores of ranks m - 1, m and m + 1
  tie, so that a threshold off by one rank or a quantile (already penalised in the
  previous check) gives the same flags, while a threshold set on the test scores, ``>=``,
  inverted flags or an ignored ``max_fpr`` do not.  The test scores tie around their
  rank m as well, so that a threshold set on them is recognised whichever rule the
  student's ``choose_threshold`` follows.

Every case is chosen so that ``fraction * H * W`` and ``max_fpr * n`` are not spoilt by
floating-point rounding: the plain formulas ``math.ceil(fraction * H * W)`` and
``math.floor(max_fpr * n)`` give the reference's integers.
"""
from __future__ import annotations

import math

import torch

from ..tasks import anomaly as _anomaly
from .checks import Case, Check, Mistake, compare_tensors, scalar_close, tensor_close
from .inputs import F64 as _F64
from .inputs import gen as _gen

__all__ = ["check_anomaly_map", "check_image_score", "check_choose_threshold", "check_flag_defects"]


def _images(gen, N, C, H, W):
    return torch.rand(N, C, H, W, generator=gen, dtype=_F64)


# ----------------------------------------------------------------------------- anomaly_map
def _ref_anomaly_map(x, x_hat):
    return _anomaly.l2_map(x, x_hat)


_MAP_MISTAKES = [
    Mistake("the error is not squared: |x - x_hat| instead of (x - x_hat)^2",
            lambda x, x_hat: (x - x_hat).abs().sum(dim=1)),
    Mistake("the square root is taken (the Euclidean norm over the channels); the map is the squared error",
            lambda x, x_hat: torch.linalg.vector_norm(x - x_hat, dim=1)),
    Mistake("the squared error is averaged over the channels; the rule sums it over the C channels",
            lambda x, x_hat: ((x - x_hat) ** 2).mean(dim=1)),
    Mistake("only the first channel is used; sum the squared error over all C channels (dim=1)",
            lambda x, x_hat: (x - x_hat)[:, 0] ** 2),
    Mistake("the channel dimension is kept: sum (x - x_hat)^2 over dim=1 to get (N, H, W)",
            lambda x, x_hat: (x - x_hat) ** 2),
    Mistake("the error is summed over the batch (dim=0); sum over the channels (dim=1): one map per image",
            lambda x, x_hat: ((x - x_hat) ** 2).sum(dim=0)),
    Mistake("the error is summed over the last axis (the columns, dim=-1); sum over the channels (dim=1)",
            lambda x, x_hat: ((x - x_hat) ** 2).sum(dim=-1)),
    Mistake("the error is summed over the pixels too: the map needs one value per pixel, shape (N, H, W)",
            lambda x, x_hat: ((x - x_hat) ** 2).sum(dim=(1, 2, 3))),
    Mistake("the squared error is averaged over everything (one number); the map has one value per pixel",
            lambda x, x_hat: ((x - x_hat) ** 2).mean()),
    Mistake("the differences are summed over the channels before squaring: square first, then sum",
            lambda x, x_hat: (x - x_hat).sum(dim=1) ** 2),
    Mistake("the error is not squared (signed differences x - x_hat summed over the channels)",
            lambda x, x_hat: (x - x_hat).sum(dim=1)),
]


def _map_cases(gen, *, shapes):
    cases = []
    for shape in shapes:
        x, x_hat = _images(gen, *shape), _images(gen, *shape)
        cases.append(Case((x, x_hat), label=f"x and x_hat of shape {tuple(shape)}"))
    return cases


def _map_edges():
    gen = _gen(77)
    x = _images(gen, 2, 2, 3, 3)
    return [
        Case((x, x.clone()), label="a perfect reconstruction: the map is 0"),
        Case((_images(gen, 1, 3, 1, 7), _images(gen, 1, 3, 1, 7)), label="a single image, one row high"),
        Case((_images(gen, 4, 2, 8, 5), torch.zeros(4, 2, 8, 5, dtype=_F64)), label="x_hat = 0"),
        Case((_images(gen, 3, 4, 4, 4), 3 * _images(gen, 3, 4, 4, 4) - 1),
             label="C = N = H = W: a reconstruction that overshoots [0, 1] (errors above 1)"),
    ]


check_anomaly_map = Check(
    "anomaly_map", _ref_anomaly_map, _map_cases, _map_edges, compare=tensor_close(1e-6, 1e-9), mistakes=_MAP_MISTAKES,
    options=dict(shapes=((2, 3, 5, 4), (3, 1, 6, 6))),
    doc="Check ``anomaly_map(x, x_hat)`` on random images of the (N, C, H, W) ``shapes`` (values in [0, 1)).")


# ----------------------------------------------------------------------------- image_score
def _ref_image_score(amap, fraction=0.01):
    return _anomaly.image_score(amap, fraction)


def _topk_mean(amap, k):
    return amap.reshape(len(amap), -1).topk(min(k, amap[0].numel()), dim=1).values.mean(dim=1)


def _k(amap, fraction, rounding=math.ceil):
    return max(1, rounding(fraction * amap.shape[1] * amap.shape[2]))


def _score_mistake(description, fn):
    return Mistake(description, lambda amap, fraction=0.01: fn(amap, fraction))


_SCORE_MISTAKES = [
    _score_mistake("the mean of the whole map; the score is the mean of the k = ceil(fraction * H * W) largest values",
                   lambda a, f: a.mean(dim=(1, 2))),
    _score_mistake("the maximum of the map; the score is the mean of the k = ceil(fraction * H * W) largest values",
                   lambda a, f: a.amax(dim=(1, 2))),
    _score_mistake("k is rounded down (int or floor); the rule is k = ceil(fraction * H * W)",
                   lambda a, f: _topk_mean(a, _k(a, f, math.floor))),
    _score_mistake("k is rounded to the nearest integer; the rule is k = ceil(fraction * H * W)",
                   lambda a, f: _topk_mean(a, _k(a, f, round))),
    _score_mistake("the sum of the k largest values; the score is their mean",
                   lambda a, f: a.reshape(len(a), -1).topk(_k(a, f), dim=1).values.sum(dim=1)),
    _score_mistake("the k smallest values are averaged; the score needs the largest ones",
                   lambda a, f: a.reshape(len(a), -1).topk(_k(a, f), dim=1, largest=False).values.mean(dim=1)),
    _score_mistake("the k largest values are taken over the whole batch; take them per image "
                   "(topk along dim=1 of amap.reshape(N, -1))",
                   lambda a, f: a.reshape(-1).topk(_k(a, f) * len(a)).values.mean()),
    _score_mistake("k is computed from all N * H * W values of the batch; it counts the pixels of one image, "
                   "k = ceil(fraction * H * W)",
                   lambda a, f: _topk_mean(a, max(1, math.ceil(f * a.numel())))),
    _score_mistake("the argument fraction is ignored (k is always ceil(0.01 * H * W)); use the fraction you are given",
                   lambda a, f: _topk_mean(a, _k(a, 0.01))),
    _score_mistake("the (1 - fraction) quantile of the map (one value); the score is the mean of the k largest values",
                   lambda a, f: torch.quantile(a.reshape(len(a), -1), 1 - f, dim=1)),
]


def _one_score_for_the_batch(got, expected, ctx):
    if isinstance(got, torch.Tensor) and got.numel() == 1 and expected.numel() > 1:
        return ("you return one number for the whole batch of maps: take the k largest values of each image "
                "separately (topk along dim=1 of amap.reshape(N, -1)), one score per image")
    return None


def _score_cases(gen, *, shapes, fractions):
    cases = []
    for N, H, W in shapes:
        for fr in fractions:
            amap = torch.rand(N, H, W, generator=gen, dtype=_F64) ** 3
            where = f"amap of shape {(N, H, W)}"
            if fr is None:
                k = math.ceil(0.01 * H * W)
                cases.append(Case((amap,), label=f"{where}, default fraction = 0.01 (k = {k})"))
            else:
                k = math.ceil(fr * H * W)
                cases.append(Case((amap,), {"fraction": fr}, label=f"{where}, fraction = {fr} (k = {k})"))
    return cases


def _score_edges():
    gen = _gen(88)
    tied = torch.zeros(2, 4, 4, dtype=_F64)
    tied[0, 0, :3] = 1.0
    return [
        Case((torch.rand(2, 8, 8, generator=gen, dtype=_F64),), {"fraction": 1.0},
             label="fraction = 1: the mean of the whole map"),
        Case((torch.rand(3, 10, 10, generator=gen, dtype=_F64),), {"fraction": 0.001},
             label="a tiny fraction: k = 1, the maximum"),
        Case((torch.rand(2, 6, 10, generator=gen, dtype=_F64),), {"fraction": 0.25}, label="H != W, k = 15"),
        Case((tied,), {"fraction": 0.25}, label="ties: the k = 4 largest values of a map with three 1s"),
        Case((torch.rand(1, 64, 64, generator=gen, dtype=_F64),), label="one 64 x 64 map, default fraction (k = 41)"),
        Case((torch.rand(5, 1, 30, generator=gen, dtype=_F64) * 10,), {"fraction": 0.1},
             label="maps one row high, k = 3"),
    ]


check_image_score = Check(
    "image_score", _ref_image_score, _score_cases, _score_edges, compare=tensor_close(1e-6, 1e-9),
    mistakes=_SCORE_MISTAKES, hints=[_one_score_for_the_batch],
    options=dict(shapes=((3, 15, 15), (2, 9, 14)), fractions=(0.05, None)),
    doc="""Check ``image_score(amap, fraction=0.01)`` (``None`` in ``fractions``: the default is used).

    Every seed, shape and fraction gives one case with non-negative random maps.""")


# ------------------------------------------------------------------------- choose_threshold
def _ref_choose_threshold(scores_good_val, max_fpr=0.05):
    return _anomaly.choose_threshold(scores_good_val, max_fpr)


def _nth_largest(s, i):
    i = min(max(i, 0), len(s) - 1)
    return float(torch.sort(s, descending=True).values[i])


def _m(s, max_fpr, rounding=math.floor):
    return rounding(max_fpr * len(s))


def _threshold_mistake(description, fn):
    return Mistake(description, lambda s, max_fpr=0.05: fn(s, max_fpr))


_THRESHOLD_MISTAKES = [
    _threshold_mistake("the m-th largest score instead of the (m+1)-th: with m = floor(max_fpr * n), return "
                       "sorted_desc[m] (0-based), so that m good scores lie above the threshold (torch.quantile with "
                       "interpolation='higher' picks this score here)",
                       lambda s, f: _nth_largest(s, _m(s, f) - 1) if _m(s, f) >= 1 else None),
    _threshold_mistake("m is rounded up (ceil); the rule is m = floor(max_fpr * n) (torch.quantile with "
                       "interpolation='lower' picks this score here)",
                       lambda s, f: _nth_largest(s, _m(s, f, math.ceil))),
    _threshold_mistake("the scores are sorted in increasing order: sorted_asc[m] is a low score, most good images "
                       "would be flagged; sort in decreasing order",
                       lambda s, f: float(torch.sort(s).values[_m(s, f)])),
    _threshold_mistake("the largest score (max_fpr is ignored)", lambda s, f: float(s.max())),
    _threshold_mistake("a quantile of the scores (torch.quantile / numpy.quantile interpolate between two scores); "
                       "the rule counts scores: sort them in decreasing order and return sorted_desc[m] with "
                       "m = floor(max_fpr * n)",
                       lambda s, f: float(torch.quantile(s, 1 - f))),
    _threshold_mistake("a quantile of the scores (torch.quantile with interpolation='nearest'); the rule counts "
                       "scores: sort them in decreasing order and return sorted_desc[m] with m = floor(max_fpr * n)",
                       lambda s, f: float(torch.quantile(s, 1 - f, interpolation="nearest"))),
    _threshold_mistake("the max_fpr quantile (a low threshold that flags 1 - max_fpr of the good images); the "
                       "threshold leaves only a fraction max_fpr of the good scores above it",
                       lambda s, f: float(torch.quantile(s, f))),
    _threshold_mistake("the mean plus a multiple of the standard deviation, or another formula; the rule picks a "
                       "score: sorted_desc[m] with m = floor(max_fpr * n)",
                       lambda s, f: float(s.mean() + 2 * s.std())),
]


def _threshold_cases(gen, *, sizes, max_fprs):
    cases = []
    for k, n in enumerate(sizes):
        s = torch.rand(n, generator=gen, dtype=_F64) * 2 + 0.5
        fpr = max_fprs[k % len(max_fprs)]
        cases.append(Case((s,), {"max_fpr": fpr}, label=f"n = {n} scores, max_fpr = {fpr} (m = {math.floor(fpr * n)})"))
    s = torch.rand(sizes[0], generator=gen, dtype=_F64)
    cases.append(Case((s,), label=f"n = {sizes[0]} scores, default max_fpr = 0.05 (m = {math.floor(0.05 * sizes[0])})"))
    return cases


def _threshold_edges():
    gen = _gen(99)
    return [
        Case((torch.rand(10, generator=gen, dtype=_F64),), {"max_fpr": 0.0}, label="max_fpr = 0: the largest score"),
        Case((torch.rand(7, generator=gen, dtype=_F64),), {"max_fpr": 0.1}, label="n = 7, max_fpr = 0.1: m = 0"),
        Case((torch.tensor([1.0, 3.0, 3.0, 3.0, 2.0, 0.5, 2.5, 0.1], dtype=_F64),), {"max_fpr": 0.25},
             label="ties: m = 2, the third largest of 3, 3, 3, 2.5, ..."),
        Case((torch.rand(33, generator=gen, dtype=_F64),), {"max_fpr": 0.5}, label="n = 33, max_fpr = 0.5: m = 16"),
        Case((torch.rand(1, generator=gen, dtype=_F64),), {"max_fpr": 0.3}, label="a single validation score"),
        Case((torch.randn(60, generator=gen, dtype=_F64) - 5,), {"max_fpr": 0.15},
             label="negative scores, n = 60, max_fpr = 0.15: m = 9"),
    ]


check_choose_threshold = Check(
    "choose_threshold", _ref_choose_threshold, _threshold_cases, _threshold_edges, compare=scalar_close(1e-9, 1e-12),
    mistakes=_THRESHOLD_MISTAKES, options=dict(sizes=(40, 27), max_fprs=(0.05, 0.1)),
    doc="""Check ``choose_threshold(scores_good_val, max_fpr=0.05)`` on random scores of the given sizes.

    Every seed gives one case per size (``max_fprs`` in turn) and one with the default ``max_fpr``.""")


# ----------------------------------------------------------------------------- flag_defects
def _ref_flag_defects(scores_val, scores_test, max_fpr=0.05):
    return scores_test > _anomaly.choose_threshold(scores_val, max_fpr)


def _flag_mistake(description, fn):
    return Mistake(description, lambda v, t, max_fpr=0.05: fn(v, t, max_fpr))


_FLAG_MISTAKES = [
    _flag_mistake("the threshold is chosen on the test scores; choose it on the good validation scores "
                  "scores_val (when the threshold is set, nothing is known about the test images)",
                  lambda v, t, f: t > _anomaly.choose_threshold(t, f)),
    _flag_mistake("max_fpr is not passed on to choose_threshold (its default 0.05 is used); pass max_fpr",
                  lambda v, t, f: t > _anomaly.choose_threshold(v, 0.05)),
    _flag_mistake(">= instead of >: an image is flagged when its score is strictly greater than the threshold",
                  lambda v, t, f: t >= _anomaly.choose_threshold(v, f)),
    _flag_mistake("the flags are inverted: True marks a defective image, whose score is above the threshold",
                  lambda v, t, f: t <= _anomaly.choose_threshold(v, f)),
    _flag_mistake("the flags are inverted: True marks a defective image, whose score is above the threshold",
                  lambda v, t, f: t < _anomaly.choose_threshold(v, f)),
    _flag_mistake("the validation images are flagged; return one flag per test image (scores_test > t)",
                  lambda v, t, f: v > _anomaly.choose_threshold(v, f)),
    _flag_mistake("the threshold is chosen on the validation and test scores together; use the good "
                  "validation scores scores_val only",
                  lambda v, t, f: t > _anomaly.choose_threshold(torch.cat([v, t]), f)),
]


def _tied_scores(gen, n, max_fpr, tie, above, below):
    """``n`` scores, in random order, whose ranks m - 1, m and m + 1 (decreasing order, m = floor(max_fpr * n))
    equal ``tie``; the higher ranks are drawn from the interval ``above``, the lower ones from ``below``
    (a list of (count, (low, high)) pairs, the last count taking what is left; low == high: that value)."""
    m = math.floor(max_fpr * n)
    n_top = max(0, m - 1)
    n_tied = min(n - n_top, 3 if m >= 1 else 2)
    parts = [torch.rand(n_top, generator=gen, dtype=_F64) * (above[1] - above[0]) + above[0],
             torch.full((n_tied,), tie, dtype=_F64)]
    left = n - n_top - n_tied
    for k, (count, (low, high)) in enumerate(below):
        c = left if k == len(below) - 1 else min(count, left)
        parts.append(torch.rand(c, generator=gen, dtype=_F64) * (high - low) + low)
        left -= c
    scores = torch.cat(parts)
    return scores[torch.randperm(n, generator=gen)]


def _flag_case(gen, n_val, n_test, max_fpr, *, label, kw=True):
    """Validation scores that tie at 1.5 around rank m, test scores that tie at 2.2 around their rank m.

    A threshold off by one rank, or one of the usual quantiles, is 1.5 on the validation scores
    (and 2.2 on the test scores: a threshold set on the test scores gives the same flags whichever
    rule the student's ``choose_threshold`` follows).  Test scores lie above 2.2, between 1.5 and
    2.2, at 1.5 and below.
    """
    val = _tied_scores(gen, n_val, max_fpr, 1.5, (1.6, 2.5), [(n_val, (0.5, 1.4))])
    rest = n_test - min(n_test, max(0, math.floor(max_fpr * n_test) - 1) + 3)
    n_mid, n_eq = max(1, rest // 3), max(1, rest // 5)
    test = _tied_scores(gen, n_test, max_fpr, 2.2, (2.3, 3.0),
                        [(n_mid, (1.6, 2.1)), (n_eq, (1.5, 1.5)), (rest, (0.5, 1.4))])
    return Case((val, test), {"max_fpr": max_fpr} if kw else {}, label=label)


def _flags_equal(got, expected, ctx):
    what = ctx if isinstance(ctx, str) else ctx.what
    if isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.dim() == 0):
        return (f"{what} returned a single number (the threshold?); return one flag per test image, "
                "the boolean tensor scores_test > t")
    if isinstance(got, torch.Tensor) and got.dtype != torch.bool and got.is_floating_point() and got.dim() == 1:
        if not bool(((got == 0) | (got == 1)).all()):
            return (f"{what} returned numbers that are not 0/1 (e.g. the scores or the threshold); "
                    "return the boolean flags scores_test > t")
    return compare_tensors(got, expected, rtol=0.0, atol=0.0, what=what)


def _flag_cases(gen, *, sizes, max_fprs):
    cases = []
    for k, (n_val, n_test) in enumerate(sizes):
        fpr = max_fprs[k % len(max_fprs)]
        cases.append(_flag_case(gen, n_val, n_test, fpr, label=f"{n_val} validation and {n_test} test scores, "
                                                              f"max_fpr = {fpr}"))
    n_val, n_test = sizes[0]
    cases.append(_flag_case(gen, n_val, n_test, 0.05, kw=False,
                            label=f"{n_val} validation and {n_test} test scores, default max_fpr = 0.05"))
    return cases


def _flag_edges():
    gen = _gen(111)
    low = torch.rand(12, generator=gen, dtype=_F64)
    return [
        _flag_case(gen, 30, 15, 0.3, label="max_fpr = 0.3, n_val = 30: m = 9"),
        _flag_case(gen, 10, 9, 0.0, label="max_fpr = 0: the threshold is the largest validation score"),
        _flag_case(gen, 50, 3, 0.05, label="three test scores"),
        Case((torch.full((10,), 1.5, dtype=_F64), low), {"max_fpr": 0.1}, label="every test score below the threshold: no flag"),
        Case((low, low + 2), {"max_fpr": 0.1}, label="every test score above the threshold: all flagged"),
    ]


check_flag_defects = Check(
    "flag_defects", _ref_flag_defects, _flag_cases, _flag_edges, compare=_flags_equal, mistakes=_FLAG_MISTAKES,
    options=dict(sizes=((40, 12), (20, 10)), max_fprs=(0.1, 0.25)),
    doc="""Check ``flag_defects(scores_val, scores_test, max_fpr=0.05)``: ``scores_test > choose_threshold(...)``.

    ``sizes`` holds (n_val, n_test); each seed and size gives a case with a ``max_fpr`` of
    ``max_fprs`` (in turn), and each seed one with the default. The student's function may
    (and should) call the student's ``choose_threshold``.""")
