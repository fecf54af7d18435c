r"""Metrics shared by the chapters, tasks and benchmarks.

Images are compared sample by sample: ``X`` and ``X_hat`` are (N, ...) with one
image (or vector) per row along the first dimension.

* :func:`mse`: mean squared error over all entries;
* :func:`per_sample_mse`: :math:`\frac1d\|x_i - \hat x_i\|^2` for each sample, shape (N,);
* :func:`psnr`: peak signal-to-noise ratio :math:`10\log_{10}(R^2 / \mathrm{MSE}_i)` in dB,
  per sample (``data_range`` R, 1 for images in [0, 1]) and averaged over the samples,
  the convention of :func:`skimage.metrics.peak_signal_noise_ratio` applied image by image.

Other helpers append their metrics in a section at the end of this file.
"""
from __future__ import annotations

import torch

from ._checks import as_tensor, check_int, check_scalar

__all__ = ["mse", "per_sample_mse", "psnr", "code_bits"]


def _pair(X, X_hat):
    X = as_tensor(X, "X", shape="(N, ...)")
    X_hat = as_tensor(X_hat, "X_hat", shape="(N, ...)", device=X.device)
    if X.dim() == 0:
        raise ValueError("X must have shape (N, ...) with one sample per row; got a 0-d value")
    if X_hat.numel() != X.numel() or X_hat.shape[0] != X.shape[0]:
        raise ValueError(f"X_hat must have the shape of X, {tuple(X.shape)}; got {tuple(X_hat.shape)}")
    dtype = torch.promote_types(X.dtype, X_hat.dtype)
    return X.reshape(len(X), -1).to(dtype), X_hat.reshape(len(X), -1).to(dtype)


def per_sample_mse(X, X_hat) -> torch.Tensor:
    r"""Mean squared error of every sample, :math:`\frac1d\|x_i - \hat x_i\|_2^2`, shape (N,)."""
    X, X_hat = _pair(X, X_hat)
    return ((X - X_hat) ** 2).mean(dim=1)


def mse(X, X_hat) -> float:
    """Mean squared error over all entries of ``X`` and ``X_hat`` (same shape)."""
    return float(per_sample_mse(X, X_hat).mean())


def psnr(X, X_hat, data_range: float = 1.0, *, reduction: str = "mean"):
    r"""Peak signal-to-noise ratio in dB, :math:`10 \log_{10}(R^2 / \mathrm{MSE}_i)`, image by image.

    ``reduction="mean"`` returns the mean over the N samples (a float), ``"none"`` the
    (N,) tensor.  A perfect reconstruction has infinite PSNR.  Higher is better; +6 dB
    halves the root-mean-square error.
    """
    data_range = check_scalar(data_range, "data_range", low=0.0, low_inclusive=False)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")
    err = per_sample_mse(X, X_hat)
    values = 10.0 * torch.log10(data_range**2 / err)
    return float(values.mean()) if reduction == "mean" else values


def code_bits(h: int, value_bits: int = 32) -> int:
    """Size in bits of one code of ``h`` numbers stored with ``value_bits`` bits each (dense storage)."""
    return check_int(h, "h") * check_int(value_bits, "value_bits")


# ============================================================================ anomaly detection
# (issue 6) Detection quality of anomaly maps and scores: image- and pixel-level AUROC
# (scikit-learn's roc_auc_score) and the per-region overlap (PRO) of Bergmann et al.
__all__ += ["image_auroc", "pixel_auroc", "pro_curve", "pro_score"]


def _np1(value, name):
    import numpy as np

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    a = np.asarray(value, dtype=np.float64)
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf; every entry must be finite")
    return a


def _labels(value, name, shape):
    import numpy as np

    a = _np1(value, name)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (like the scores); got {a.shape}")
    if not np.isin(a, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold 0 (normal) and 1 (anomalous) only")
    if a.min() == a.max():
        raise ValueError(f"{name} must contain both normal (0) and anomalous (1) entries for an AUROC")
    return a.astype(bool)


def image_auroc(scores, labels) -> float:
    r"""Image-level AUROC: the probability that a random defective image scores higher than a random good one.

    ``scores`` (N,) anomaly scores, ``labels`` (N,) with 1 = defective (scikit-learn's
    :func:`~sklearn.metrics.roc_auc_score`; 0.5 is chance, 1 a perfect ranking).
    """
    from sklearn.metrics import roc_auc_score

    s = _np1(scores, "scores")
    if s.ndim != 1:
        raise ValueError(f"scores must have shape (N,), one score per image; got {s.shape}")
    return float(roc_auc_score(_labels(labels, "labels", s.shape), s))


def pixel_auroc(amaps, masks) -> float:
    """Pixel-level AUROC: every pixel of every test image is one sample (``amaps`` (N, H, W), ``masks`` (N, H, W) or (N, 1, H, W))."""
    from sklearn.metrics import roc_auc_score

    a = _np1(amaps, "amaps")
    if a.ndim != 3:
        raise ValueError(f"amaps must have shape (N, H, W); got {a.shape}")
    m = _np1(masks, "masks")
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    return float(roc_auc_score(_labels(m, "masks", a.shape).ravel(), a.ravel()))


def pro_curve(amaps, masks, *, max_fpr: float = 0.3, n_thresholds: int = 200):
    r"""The per-region overlap curve of Bergmann et al. {cite}`bergmann2021mvtec`: (fpr, pro) arrays.

    Each connected defect region :math:`C_k` of the ground truth (8-connectivity, over all
    images) counts equally, whatever its size.  For a threshold :math:`t` the
    prediction is :math:`P_t = \{\text{pixels with } a > t\}` and

    .. math::

        \mathrm{PRO}(t) = \frac1K \sum_{k=1}^K \frac{|P_t \cap C_k|}{|C_k|},\qquad
        \mathrm{FPR}(t) = \frac{|P_t \cap \text{normal pixels}|}{|\text{normal pixels}|}.

    The thresholds are quantiles of the normal pixels' values chosen so that the FPR runs
    from 0 to ``max_fpr`` in ``n_thresholds`` steps (the exact FPR at each threshold is returned).
    """
    import numpy as np
    from skimage.measure import label

    a = _np1(amaps, "amaps")
    if a.ndim != 3:
        raise ValueError(f"amaps must have shape (N, H, W); got {a.shape}")
    m = _np1(masks, "masks")
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    m = _labels(m, "masks", a.shape)
    max_fpr = check_scalar(max_fpr, "max_fpr", low=0.0, low_inclusive=False, high=1.0)
    n_thresholds = check_int(n_thresholds, "n_thresholds", low=2)
    normal = np.sort(a[~m])[::-1]  # descending
    n_normal = normal.size
    ks = np.unique(np.floor(np.linspace(0, max_fpr, n_thresholds) * n_normal).astype(np.int64))
    ks = ks[ks < n_normal]
    thresholds = normal[ks]  # at most k normal pixels lie strictly above normal[k]
    fpr = (n_normal - np.searchsorted(normal[::-1], thresholds, side="right")) / n_normal
    regions = []
    for i in range(len(a)):
        lab = label(m[i], connectivity=2)
        for r in range(1, lab.max() + 1):
            regions.append(np.sort(a[i][lab == r]))
    pro = np.zeros(len(thresholds))
    for vals in regions:
        pro += (vals.size - np.searchsorted(vals, thresholds, side="right")) / vals.size
    pro /= len(regions)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], pro])


def pro_score(amaps, masks, *, max_fpr: float = 0.3, n_thresholds: int = 200) -> float:
    r"""Area under the PRO curve (:func:`pro_curve`) for FPR in [0, ``max_fpr``], divided by ``max_fpr``.

    1 is perfect; a random anomaly map scores about ``max_fpr / 2`` (0.15 for the usual 0.3),
    since then the PRO equals the FPR.
    """
    import numpy as np

    fpr, pro = pro_curve(amaps, masks, max_fpr=max_fpr, n_thresholds=n_thresholds)
    order = np.argsort(fpr, kind="stable")
    fpr, pro = fpr[order], pro[order]
    if fpr[-1] < max_fpr:  # the last quantile may stop just short of max_fpr: extend flat
        fpr, pro = np.append(fpr, max_fpr), np.append(pro, pro[-1])
    keep = fpr <= max_fpr
    f, p = fpr[keep], pro[keep]
    if f[-1] < max_fpr:
        p_end = np.interp(max_fpr, fpr, pro)
        f, p = np.append(f, max_fpr), np.append(p, p_end)
    return float(np.trapezoid(p, f) / max_fpr)


# ============================================================================ segmentation
# (issue 5) Overlap of binary masks: intersection over union (Jaccard index) and Dice
# (F1 score).  Pooled over all pixels they equal scikit-learn's jaccard_score / f1_score
# of the flattened masks (tests/test_unet.py checks it); per image they are averaged.
__all__ += ["iou", "dice"]

import numpy as np  # noqa: E402


def _masks(pred, target):
    out = []
    for name, value in (("pred", pred), ("target", target)):
        if isinstance(value, np.ndarray) and value.dtype == bool:
            value = torch.from_numpy(value)
        if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
            t = value
        else:
            t = as_tensor(value, name, shape="(N, ...) of 0/1")
            if t.numel() and not bool(((t == 0) | (t == 1)).all()):
                raise ValueError(f"{name} must be a binary mask (bool or 0/1 values); threshold probabilities first")
            t = t.bool()
        out.append(t)
    pred, target = out
    if pred.shape != target.shape:
        raise ValueError(f"pred must have the shape of target, {tuple(target.shape)}; got {tuple(pred.shape)}")
    return pred, target.to(pred.device)


def _overlap(pred, target, per_image, empty, kind):
    pred, target = _masks(pred, target)
    empty = check_scalar(empty, "empty", low=0.0, high=1.0)
    if per_image:
        if pred.dim() < 2:
            raise ValueError(f"per_image needs masks of shape (N, ...) with N images; got shape {tuple(pred.shape)}")
        pred, target = pred.reshape(len(pred), -1), target.reshape(len(target), -1)
    else:
        pred, target = pred.reshape(1, -1), target.reshape(1, -1)
    inter = (pred & target).sum(dim=1).double()
    if kind == "iou":
        denom = (pred | target).sum(dim=1).double()
        num = inter
    else:
        denom = (pred.sum(dim=1) + target.sum(dim=1)).double()
        num = 2 * inter
    values = torch.where(denom > 0, num / denom.clamp_min(1), torch.full_like(num, empty))
    return values if per_image else float(values[0])


def iou(pred, target, *, per_image: bool = False, empty: float = 1.0):
    r"""Intersection over union (Jaccard index) of binary masks, :math:`|P \cap T| \,/\, |P \cup T|`.

    ``pred`` and ``target`` have the same shape and hold bool or 0/1 values.  By
    default the counts are pooled over all pixels (one float, = scikit-learn's
    ``jaccard_score`` of the flattened masks); ``per_image=True`` returns the IoU of
    every image (N,).  Two empty masks agree perfectly: their IoU is ``empty`` (1).
    """
    return _overlap(pred, target, per_image, empty, "iou")


def dice(pred, target, *, per_image: bool = False, empty: float = 1.0):
    r"""Dice coefficient (F1 score) of binary masks, :math:`2|P \cap T| \,/\, (|P| + |T|)`.

    Same conventions as :func:`iou`; Dice :math:`= 2\,\mathrm{IoU} / (1 + \mathrm{IoU})` image by image.
    """
    return _overlap(pred, target, per_image, empty, "dice")
