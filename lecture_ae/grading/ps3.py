r"""Checks for problem set 3 (shortcut connections and U-Net): one ``check_*`` per function the students write.

Each check compares the student's function with the reference on random float64 inputs
drawn from ``seeds`` and raises :class:`~lecture_ae.grading.checks.CheckFailed` with a
message for the student at the first difference.  The autograder cells of
``solutions/ps3_unet`` call every check twice: once with the defaults (the visible
tests) and once between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` with
other seeds, shapes and ``edge_cases=True``.

* :func:`check_crop_and_concat`: ``crop_and_concat(skip, x)``, the shortcut merge of the
  original U-Net, against :func:`lecture_ae.models.unet.crop_and_concat`: the encoder
  map ``skip`` (N, C_s, H_s, W_s) is cropped to its central H x W window, starting at
  ``((H_s - H) // 2, (W_s - W) // 2)``, then ``torch.cat([crop, x], dim=1)``.  Besides the
  known wrong crops, a result of the wrong shape is diagnosed from the inputs' shapes
  (concatenated along the batch or a spatial dimension, not cropped, one map missing).
* :func:`check_iou`: ``iou(pred, target)``, the intersection over union of the predicted
  mask ``P = {pred > 0.5}`` and the true mask ``T``, counts pooled over all entries, 1
  for two empty masks; :func:`lecture_ae.metrics.iou` of the thresholded prediction.
  ``pred`` holds 0/1 values, bools or predicted probabilities (``sigmoid`` of the
  logits); ``target`` 0/1 values or bools.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import metrics as _metrics
from ..models import unet as _unet
from .checks import Case, Check, Mistake, compare_scalars, compare_tensors
from .inputs import F64 as _F64
from .inputs import gen as _gen
from .inputs import mask as _mask
from .inputs import randn as _randn

__all__ = ["check_crop_and_concat", "check_iou"]


# ------------------------------------------------------------------ crop_and_concat
def _crop_at(skip, H, W, top, left):
    return skip[..., top : top + H, left : left + W]


def _cc_variant(skip, x, *, where="center", order="skip_first", dim=1):
    H, W = x.shape[-2:]
    dh, dw = skip.shape[-2] - H, skip.shape[-1] - W
    if where in ("nearest", "bilinear"):
        crop = F.interpolate(skip, size=(H, W), mode=where, **({"align_corners": False} if where == "bilinear" else {}))
    else:
        top, left = {
            "center": (dh // 2, dw // 2),
            "ceil": ((dh + 1) // 2, (dw + 1) // 2),
            "round": (round(dh / 2), round(dw / 2)),
            "corner": (0, 0),
            "end": (dh, dw),
            "swapped": (dw // 2, dh // 2),
        }[where]
        crop = _crop_at(skip, H, W, top, left)
        if tuple(crop.shape[-2:]) != (H, W):
            return None  # the window does not fit: this mistake fails differently
    parts = [crop, x] if order == "skip_first" else [x, crop]
    return torch.cat(parts, dim=dim)


def _cc_mistake(description, **kw):
    return Mistake(description, lambda skip, x: _cc_variant(skip, x, **kw))


_CC_MISTAKES = [
    _cc_mistake("the crop starts at the top-left corner, skip[..., :H, :W]; the U-Net crops the centre: "
                "start at row (H_s - H) // 2 and column (W_s - W) // 2", where="corner"),
    _cc_mistake("the crop is off by one row or column when H_s - H (or W_s - W) is odd: it starts at "
                "ceil((H_s - H) / 2) (Python's round() rounds 1.5 up to 2, too); start at (H_s - H) // 2, so that "
                "the extra row is dropped at the bottom and the extra column at the right", where="ceil"),
    _cc_mistake("the crop is off by one where round((H_s - H) / 2) rounds half up to an even number (Python's "
                "round goes to the even neighbour: round(1.5) = 2, round(2.5) = 2); use integer division "
                "(H_s - H) // 2", where="round"),
    _cc_mistake("the crop takes the bottom-right corner, skip[..., H_s - H:, W_s - W:]; the U-Net crops the centre",
                where="end"),
    _cc_mistake("the row and column offsets are swapped: the crop starts at row (H_s - H) // 2 (heights, "
                "shape[-2]) and column (W_s - W) // 2 (widths, shape[-1])", where="swapped"),
    _cc_mistake("x's channels come first: concatenate [crop(skip), x], the shortcut's channels first",
                order="x_first"),
    _cc_mistake("the shortcut is resized by interpolation (nearest) instead of cropped: the U-Net cuts out the "
                "central window, it does not rescale the map", where="nearest"),
    _cc_mistake("the shortcut is resized by interpolation (bilinear) instead of cropped: the U-Net cuts out the "
                "central window, it does not rescale the map", where="bilinear"),
]


def _cc_shape_hint(got, expected, ctx) -> str:
    """What a result of the wrong shape suggests, from the shapes of the inputs."""
    if not isinstance(got, torch.Tensor) or got.dim() != 4:
        return ""
    skip, x = ctx.case.args
    N, Cs, Hs, Ws = skip.shape
    _, Cx, H, W = x.shape
    n, c, h, w = got.shape
    if (h, w) == (Hs, Ws) and (h, w) != (H, W):
        return ("your result has the shortcut's height and width; the result has x's H x W: crop skip to x's "
                "size (do not pad x to skip's)")
    if n == 2 * N and (h, w) == (H, W):
        return "concatenated along the batch dimension (dim=0); the channels are dim=1 of (N, C, H, W)"
    if (h, w) in ((2 * H, W), (H, 2 * W)):
        return ("concatenated along a spatial dimension (dim=2 or 3, or -1); the channels are dim=1 of "
                "(N, C, H, W)")
    if (n, h, w) == (N, H, W) and c in (Cs, Cx):
        return "only one of the two maps is in the result: concatenate the cropped skip and x along dim=1"
    return ""


def _ref_crop_and_concat(skip, x):
    return _unet.crop_and_concat(skip, x)


def _cc_cases(gen, *, shapes):
    return [Case((_randn(gen, N, Cs, Hs, Ws), _randn(gen, N, Cx, H, W)),
                 label=f"skip of shape {(N, Cs, Hs, Ws)}, x of shape {(N, Cx, H, W)}")
            for N, Cs, Hs, Ws, Cx, H, W in shapes]


def _cc_edges():
    gen = _gen(77)

    def case(N, Cs, Hs, Ws, Cx, H, W, label):
        return Case((_randn(gen, N, Cs, Hs, Ws), _randn(gen, N, Cx, H, W)), label=label)

    return [
        case(1, 64, 136, 136, 64, 104, 104, "the original U-Net's last level: 136 x 136 cropped to 104 x 104"),
        case(3, 2, 5, 5, 1, 4, 4, "one extra row and column: they are dropped at the bottom and the right"),
        case(2, 1, 7, 9, 3, 1, 1, "x is a single pixel: the centre pixel of skip"),
        case(1, 3, 11, 6, 2, 4, 6, "only the height differs (by 7, odd)"),
        case(2, 2, 8, 13, 3, 8, 8, "only the width differs (by 5, odd)"),
        case(2, 5, 6, 6, 5, 6, 6, "equal sizes: nothing to crop"),
    ]


check_crop_and_concat = Check(
    "crop_and_concat", _ref_crop_and_concat, _cc_cases, _cc_edges,
    compare=lambda got, expected, ctx: compare_tensors(got, expected, rtol=0.0, atol=0.0, what=ctx.what),
    mistakes=_CC_MISTAKES, hints=[_cc_shape_hint],
    options=dict(shapes=((2, 3, 9, 10, 3, 6, 6), (1, 2, 8, 8, 5, 8, 8), (2, 4, 12, 7, 2, 8, 4))),
    doc="""Check ``crop_and_concat(skip, x)``; ``shapes`` are (N, C_s, H_s, W_s, C_x, H, W).

    The comparison is exact (a crop and a concatenation change no value).""")


# ------------------------------------------------------------------------------ IoU
THRESHOLD = 0.5  # a pixel is predicted foreground when pred > THRESHOLD


def _ref_iou(pred, target):
    return _metrics.iou(pred > THRESHOLD, target > THRESHOLD)


def _counts(pred, target, threshold=True):
    p = (pred > THRESHOLD) if threshold else pred.bool()
    p, t = p.reshape(-1), (target > THRESHOLD).reshape(-1)
    return float((p & t).sum()), float(p.sum()), float(t.sum()), p.numel()


def _div(a, b, empty=1.0):
    return a / b if b > 0 else empty


def _from_counts(formula, *, threshold=True):
    """A mistake computed from the counts (|P and T|, |P|, |T|, number of entries)."""
    return lambda pred, target: formula(*_counts(pred, target, threshold))


def _per_image_iou(pred, target):
    if pred.dim() < 2:
        return None
    vals = []
    for p, t in zip(pred, target):
        i, a, b, _ = _counts(p, t)
        vals.append(_div(i, a + b - i))
    return sum(vals) / len(vals)


def _soft(pred, target):
    p, t = pred.to(_F64), (target > THRESHOLD).to(_F64)
    if bool(((p == 0) | (p == 1)).all()):
        return None  # a mask: the soft IoU is the IoU itself
    return float(_div((p * t).sum(), (p + t - p * t).sum()))


_SOFT = ("the predicted probabilities are used as they are (a 'soft' IoU); threshold them first: the predicted "
         "mask is P = pred > 0.5")

_IOU_MISTAKES = [
    Mistake(_SOFT, _soft),  # sum(min(p, t)) / sum(max(p, t)) is the same number for a 0/1 target
    Mistake("every non-zero probability counts as foreground (pred.bool(), pred != 0 or pred > 0); the predicted "
            "mask is P = pred > 0.5",
            _from_counts(lambda i, a, b, n: _div(i, a + b - i), threshold=False)),
    Mistake("this is the Dice coefficient 2 |P and T| / (|P| + |T|); the IoU divides the intersection by the union",
            _from_counts(lambda i, a, b, n: _div(2 * i, a + b))),
    Mistake("the union is |P| + |T|, which counts the intersection twice: |P or T| = |P| + |T| - |P and T|",
            _from_counts(lambda i, a, b, n: _div(i, a + b, None))),
    Mistake("the intersection counts the pixels where pred equals target, background included (pred == target); "
            "|P and T| counts the pixels that are foreground in both",
            _from_counts(lambda i, a, b, n: _div(n - a - b + 2 * i, a + b - i, None))),
    Mistake("intersection and union are swapped: IoU = |P and T| / |P or T| (at most 1)",
            _from_counts(lambda i, a, b, n: _div(a + b - i, i, None))),
    Mistake("this is the pixel accuracy (the fraction of pixels where pred equals target); "
            "the IoU ignores the pixels that are background in both masks",
            _from_counts(lambda i, a, b, n: (n - a - b + 2 * i) / n)),
    Mistake("the intersection is divided by the target's area |T| (this is the recall); divide by the union",
            _from_counts(lambda i, a, b, n: _div(i, b, None))),
    Mistake("the intersection is divided by the predicted area |P| (this is the precision); divide by the union",
            _from_counts(lambda i, a, b, n: _div(i, a, None))),
    Mistake("integer division: |P and T| // |P or T| is 0 unless the masks are equal; divide with /",
            _from_counts(lambda i, a, b, n: float(int(i) // int(a + b - i)) if a + b - i > 0 else None)),
    Mistake("the IoU is computed image by image and averaged; compute one IoU with the counts pooled over all "
            "entries", _per_image_iou),
    Mistake("two empty masks agree perfectly: their IoU is 1, not 0",
            _from_counts(lambda i, a, b, n: 0.0 if a + b == 0 else None)),
    Mistake("0 / 0 = nan: when both masks are empty the union is empty; return 1 in that case (two empty masks "
            "agree perfectly)", _from_counts(lambda i, a, b, n: math.nan if a + b == 0 else None)),
]


def _is_nan(value) -> bool:
    try:
        if isinstance(value, torch.Tensor):
            return value.numel() == 1 and bool(torch.isnan(value.detach().reshape(-1)[0].to(_F64)))
        return isinstance(value, float) and math.isnan(value)
    except (TypeError, RuntimeError):
        return False


def _iou_compare(got, expected, ctx):
    if _is_nan(got) and _is_nan(expected):  # the reference is never NaN: only a mistake's result matches here
        return None
    return compare_scalars(got, expected, rtol=1e-6, atol=1e-9, what=ctx if isinstance(ctx, str) else ctx.what)


def _probabilities(gen, target, *, sharpness=1.5, bias=-0.4):
    """Predicted probabilities sigmoid(z) that mostly agree with ``target`` (never exactly 0.5).

    The negative ``bias`` makes the predicted area smaller than the target's: with
    |P| = |T| precision, recall and Dice would be the same number.
    """
    z = sharpness * (2 * target - 1) + bias + 1.5 * torch.randn(target.shape, generator=gen, dtype=_F64)
    p = torch.sigmoid(z)
    return torch.where(p == THRESHOLD, torch.full_like(p, 0.49), p)


def _iou_cases(gen, *, shapes, densities):
    cases = []
    for k, shape in enumerate(shapes):
        T = _mask(gen, shape, densities[k % len(densities)])
        if k == 0:
            cases.append(Case((_probabilities(gen, T), T),
                              label=f"pred: probabilities of shape {tuple(shape)}, target: 0/1 mask"))
        else:
            cases.append(Case((_mask(gen, shape, 0.35), T), label=f"0/1 masks of shape {tuple(shape)}"))
    return cases


def _iou_edges():
    gen = _gen(88)
    T = _mask(gen, (2, 1, 6, 6), 0.4)
    zeros = torch.zeros(2, 1, 4, 4, dtype=_F64)
    big = _mask(gen, (3, 1, 20, 20), 0.3)
    low = torch.rand(1, 1, 4, 4, generator=gen, dtype=_F64) * 0.4 + 0.05
    T4 = T[:1, :, :4, :4].clone()
    T4[0, 0, 0, 0] = 1.0
    return [
        Case((T.clone(), T.clone()), label="pred equals target: IoU 1"),
        Case((T.clone(), 1 - T), label="disjoint masks: IoU 0"),
        Case((zeros, zeros.clone()), label="both masks empty: IoU 1"),
        Case((low, T4), label="every probability is below 0.5: nothing is predicted, IoU 0"),
        Case((big.bool(), _mask(gen, (3, 1, 20, 20), 0.35).bool()), label="bool masks"),
        Case((torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0], dtype=_F64), torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=_F64)),
             label="1-D masks: intersection 2, union 4"),
        Case((_mask(gen, (2, 1, 6, 6), 0.05), _mask(gen, (2, 1, 6, 6), 0.9)), label="small prediction, large target"),
        Case((_probabilities(gen, big, sharpness=0.5, bias=-0.5).float(), big.float()),
             label="float32 probabilities, mostly below 0.5"),
    ]


check_iou = Check(
    "iou", _ref_iou, _iou_cases, _iou_edges, compare=_iou_compare, mistakes=_IOU_MISTAKES,
    options=dict(shapes=((4, 1, 8, 8), (3, 1, 5, 7)), densities=(0.4, 0.3)),
    doc="""Check ``iou(pred, target) -> one number``.

    Every seed gives, for the first shape, predicted probabilities against a 0/1 target,
    and for the others 0/1 predictions (``densities`` are the targets' fractions of
    foreground). ``edge_cases`` adds equal, disjoint and empty masks, bools, 1-D masks,
    probabilities all below 0.5 and float32 probabilities.""")
