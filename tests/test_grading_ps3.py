"""The ps3 checks (crop_and_concat, iou) with right and wrong functions, without nbgrader."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lecture_ae.grading import CheckFailed
from lecture_ae.grading import ps3

# the hidden calls of solutions/ps3_unet (the visible ones use the defaults)
HIDDEN_CC = dict(seeds=(11, 12), shapes=((3, 2, 17, 12, 3, 10, 9), (1, 6, 9, 9, 2, 4, 4), (2, 3, 14, 11, 3, 9, 8)),
                 edge_cases=True)
HIDDEN_IOU = dict(seeds=(21, 22), shapes=((2, 1, 16, 16), (5, 1, 3, 9), (30,)), densities=(0.2, 0.5, 0.7),
                  edge_cases=True)


# ------------------------------------------------------------- right implementations
def crop_and_concat(skip, x):
    H, W = x.shape[-2:]
    top, left = (skip.shape[-2] - H) // 2, (skip.shape[-1] - W) // 2
    return torch.cat([skip[:, :, top : top + H, left : left + W], x], dim=1)


def crop_and_concat_narrow(skip, x):
    """Written otherwise: narrow() and a negative channel dimension."""
    H, W = x.shape[-2:]
    crop = skip.narrow(2, (skip.shape[2] - H) // 2, H).narrow(3, (skip.shape[3] - W) // 2, W)
    return torch.cat((crop, x), dim=-3)


def iou(pred, target):
    p, t = pred > 0.5, target > 0.5
    union = (p | t).sum()
    return 1.0 if union == 0 else float((p & t).sum() / union)


def iou_from_sums(pred, target):
    """Written otherwise: counts from sums of products, a 0-d tensor back."""
    p, t = (pred > 0.5).double(), target.double()
    inter = (p * t).sum()
    union = p.sum() + t.sum() - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones(()))


def iou_sklearn(pred, target):
    """scikit-learn's Jaccard score of the flattened masks (a numpy float)."""
    from sklearn.metrics import jaccard_score

    p = (np.asarray(pred, dtype=np.float64) > 0.5).ravel()
    t = np.asarray(target, dtype=np.float64).ravel() > 0.5
    return jaccard_score(t, p, zero_division=1.0)


def iou_round(pred, target):
    """Thresholding by rounding: the same as pred > 0.5 except at exactly 0.5, which no case holds."""
    p, t = torch.round(pred.double()).bool(), target.bool()
    union = int((p | t).sum())
    return 1.0 if union == 0 else int((p & t).sum()) / union


RIGHT = [
    (ps3.check_crop_and_concat, crop_and_concat, HIDDEN_CC),
    (ps3.check_crop_and_concat, crop_and_concat_narrow, HIDDEN_CC),
    (ps3.check_iou, iou, HIDDEN_IOU),
    (ps3.check_iou, iou_from_sums, HIDDEN_IOU),
    (ps3.check_iou, iou_sklearn, HIDDEN_IOU),
    (ps3.check_iou, iou_round, HIDDEN_IOU),
]


@pytest.mark.parametrize("check,fn,hidden", RIGHT, ids=[fn.__name__ for _, fn, _ in RIGHT])
def test_right_implementations_pass_visible_and_hidden_checks(check, fn, hidden, capsys):
    assert check(fn) is None  # a value would be read by nbgrader as partial credit
    assert check(fn, **hidden) is None
    out = capsys.readouterr().out
    assert "visible checks passed" in out and "hidden checks passed" in out


# -------------------------------------------------------------- the references by hand
def test_the_crop_is_central_with_the_extra_row_and_column_dropped_at_the_bottom_right():
    skip = torch.arange(25.0, dtype=torch.float64).reshape(1, 1, 5, 5)
    x = torch.full((1, 2, 4, 4), -1.0, dtype=torch.float64)
    out = ps3._unet.crop_and_concat(skip, x)
    assert out.shape == (1, 3, 4, 4)
    assert torch.equal(out[0, 0], skip[0, 0, :4, :4])  # (5 - 4) // 2 = 0: start at row 0, column 0
    assert torch.equal(out[:, 1:], x)  # the skip's channels first
    skip = torch.arange(7 * 9.0, dtype=torch.float64).reshape(1, 1, 7, 9)
    assert float(crop_and_concat(skip, torch.zeros(1, 1, 1, 1, dtype=torch.float64))[0, 0, 0, 0]) == 3 * 9 + 4
    big = torch.randn(1, 2, 136, 136, dtype=torch.float64)
    assert torch.equal(ps3._unet.crop_and_concat(big, torch.zeros(1, 3, 104, 104, dtype=torch.float64))[:, :2],
                       big[:, :, 16:120, 16:120])


def test_the_iou_reference_thresholds_the_prediction_at_one_half():
    pred = torch.tensor([0.9, 0.6, 0.4, 0.1, 0.51, 0.2], dtype=torch.float64)  # P = {0, 1, 4}
    target = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # T = {0, 2, 4}
    assert math.isclose(ps3._ref_iou(pred, target), 2 / 4)  # P and T = {0, 4}, P or T = {0, 1, 2, 4}
    assert math.isclose(iou(pred, target), 2 / 4) and math.isclose(iou_sklearn(pred, target), 2 / 4)
    assert ps3._ref_iou(torch.zeros(3, 3), torch.zeros(3, 3)) == 1.0
    assert ps3._ref_iou(torch.full((2, 2), 0.3), torch.eye(2)) == 0.0
    assert ps3._ref_iou(torch.eye(3).bool(), torch.eye(3)) == 1.0


# ------------------------------------------------------------------- wrong functions
def _cc(top=None, left=None, order="skip_first", dim=1):
    def fn(skip, x):
        H, W = x.shape[-2:]
        dh, dw = skip.shape[-2] - H, skip.shape[-1] - W
        t = dh // 2 if top is None else top(dh, dw)
        l = dw // 2 if left is None else left(dh, dw)
        crop = skip[:, :, t : t + H, l : l + W]
        return torch.cat([crop, x] if order == "skip_first" else [x, crop], dim=dim)

    return fn


def _thresholded(formula):
    """An iou computed from |P and T|, |P|, |T| and the number of entries by ``formula``."""

    def fn(pred, target):
        p, t = pred > 0.5, target > 0.5
        return formula(int((p & t).sum()), int(p.sum()), int(t.sum()), p.numel())

    return fn


def _soft_product(pred, target):
    inter = (pred * target).sum()
    return float(inter / (pred + target - pred * target).sum())


def _per_image(pred, target):
    return sum(iou(p, t) for p, t in zip(pred, target)) / len(pred)


def _nan_when_empty(pred, target):
    p, t = pred > 0.5, target > 0.5
    return (p & t).sum() / (p | t).sum()  # a tensor: 0 / 0 is nan, no exception


def _resize(mode):
    return lambda skip, x: torch.cat([F.interpolate(skip, size=tuple(x.shape[-2:]), mode=mode), x], dim=1)


# (check, wrong function, phrase of the message, caught by the visible checks?)
WRONG = [
    (ps3.check_crop_and_concat, _cc(top=lambda dh, dw: 0, left=lambda dh, dw: 0), "the top-left corner", True),
    (ps3.check_crop_and_concat, _cc(top=lambda dh, dw: (dh + 1) // 2, left=lambda dh, dw: (dw + 1) // 2),
     "off by one row or column", True),
    (ps3.check_crop_and_concat, _cc(top=lambda dh, dw: round(dh / 2), left=lambda dh, dw: round(dw / 2)),
     "off by one", True),
    (ps3.check_crop_and_concat, _cc(top=lambda dh, dw: dh, left=lambda dh, dw: dw), "the bottom-right corner", True),
    (ps3.check_crop_and_concat, _cc(top=lambda dh, dw: dw // 2, left=lambda dh, dw: dh // 2),
     "the row and column offsets are swapped", True),
    (ps3.check_crop_and_concat, _cc(order="x_first"), "x's channels come first", True),
    (ps3.check_crop_and_concat, _cc(dim=0), "along the batch dimension (dim=0)", True),
    (ps3.check_crop_and_concat, _cc(dim=-1), "along a spatial dimension", True),
    (ps3.check_crop_and_concat, _resize("nearest"), "resized by interpolation (nearest)", True),
    (ps3.check_crop_and_concat, _resize("bilinear"), "resized by interpolation (bilinear)", True),
    (ps3.check_crop_and_concat,
     lambda skip, x: torch.cat([skip, F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))], 1),
     "your result has the shortcut's height and width", True),
    (ps3.check_crop_and_concat, lambda skip, x: x.clone(), "only one of the two maps", True),
    (ps3.check_iou, _soft_product, "used as they are (a 'soft' IoU)", True),
    (ps3.check_iou, lambda p, t: float(torch.minimum(p, t).sum() / torch.maximum(p, t).sum()),
     "used as they are (a 'soft' IoU)", True),
    (ps3.check_iou, lambda p, t: iou(p.bool().double(), t), "every non-zero probability counts as foreground", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: 2 * i / (a + b)), "this is the Dice coefficient", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: i / (a + b)), "counts the intersection twice", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: (n - a - b + 2 * i) / (a + b - i)),
     "the pixels where pred equals target, background included", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: (a + b - i) / i), "intersection and union are swapped", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: (n - a - b + 2 * i) / n), "this is the pixel accuracy", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: i / b), "(this is the recall)", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: i / a), "(this is the precision)", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: i // (a + b - i)), "integer division", True),
    (ps3.check_iou, _per_image, "computed image by image and averaged", True),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: 0.0 if a + b == 0 else i / (a + b - i)),
     "their IoU is 1, not 0", False),
    (ps3.check_iou, _nan_when_empty, "0 / 0 = nan", False),
    (ps3.check_iou, _thresholded(lambda i, a, b, n: i / (a + b - i)), "raised ZeroDivisionError", False),
]


@pytest.mark.parametrize("check,wrong,phrase,visible", WRONG, ids=[f"{c.__name__}-{k}" for k, (c, *_) in enumerate(WRONG)])
def test_typical_mistakes_fail_with_a_message_naming_the_problem(check, wrong, phrase, visible):
    hidden = HIDDEN_CC if check is ps3.check_crop_and_concat else HIDDEN_IOU
    if not visible:
        check(wrong)  # only the hidden edge cases catch it ...
    with pytest.raises(CheckFailed) as info:
        check(wrong, **({} if visible else hidden))
    assert phrase in str(info.value), str(info.value)


def test_every_known_mistake_is_exercised():
    phrases = [phrase for _, _, phrase, _ in WRONG]
    for mistake in ps3._CC_MISTAKES + ps3._IOU_MISTAKES:
        assert any(p in mistake.description for p in phrases), mistake.description


def test_a_crop_that_rounds_half_to_even_is_named():
    rounding = _cc(top=lambda dh, dw: round(dh / 2), left=lambda dh, dw: round(dw / 2))
    # 5 extra rows: round(2.5) = 2 is right; 3 extra columns: round(1.5) = 2 is one column too far right
    # (a ceil would also start one row too low): the hidden case (2, 3, 14, 11, 3, 9, 8) has these sizes
    with pytest.raises(CheckFailed) as info:
        ps3.check_crop_and_concat(rounding, shapes=((1, 2, 14, 11, 2, 9, 8),))
    assert "off by one where round((H_s - H) / 2) rounds half" in str(info.value)


def test_calling_the_reference_scores_zero():
    from lecture_ae.metrics import dice, iou as ref_iou
    from lecture_ae.models.unet import center_crop, crop_and_concat as ref_cc

    cases = [
        (ps3.check_crop_and_concat, lambda skip, x: ref_cc(skip, x)),
        (ps3.check_crop_and_concat, lambda skip, x: torch.cat([center_crop(skip, *x.shape[-2:]), x], 1)),
        (ps3.check_iou, lambda p, t: ref_iou(p > 0.5, t > 0.5)),
        (ps3.check_iou, lambda p, t: (lambda d: d / (2 - d))(dice(p > 0.5, t > 0.5))),
        (ps3.check_iou, lambda p, t: ps3._ref_iou(p, t)),  # the checks' own helpers too
    ]
    for check, fn in cases:
        with pytest.raises(CheckFailed, match="calls the reference implementation"):
            check(fn)
    ps3.check_iou(iou)  # everything is restored afterwards
    ps3.check_crop_and_concat(crop_and_concat)


def test_exceptions_in_place_changes_wrong_types_and_loops_are_reported():
    def zero_skip_in_place(skip, x):
        out = crop_and_concat(skip, x)
        skip.zero_()
        return out

    with pytest.raises(CheckFailed, match="is not implemented yet"):
        ps3.check_iou(lambda p, t: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(CheckFailed, match="changed its input skip in place"):
        ps3.check_crop_and_concat(zero_skip_in_place)
    with pytest.raises(CheckFailed, match="it should return a single number"):
        ps3.check_iou(lambda p, t: ((p > 0.5) & (t > 0.5)).sum((1, 2, 3)) / ((p > 0.5) | (t > 0.5)).sum((1, 2, 3)))
    with pytest.raises(CheckFailed, match="is the `return` statement missing"):
        ps3.check_crop_and_concat(lambda skip, x: None)
    with pytest.raises(CheckFailed, match="did not finish within the time limit"):
        ps3.check_crop_and_concat(lambda skip, x: [None for _ in iter(int, 1)], limit=0.5)
