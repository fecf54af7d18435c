"""Figures of the anomaly-detection chapter: the defect gallery, the lecture's heatmap figure, score histograms."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["defect_gallery", "anomaly_figure", "score_histograms", "GREY", "HEAT", "OUTLINE"]

GREY = "gray"  # images
HEAT = "inferno"  # anomaly maps
OUTLINE = "#00e5ff"  # ground-truth outlines (cyan: visible on grey and on the heat map)


def _np(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _stack(x, name, n=None, hw=None, maps=False):
    """x as a numpy stack (N, H, W) (maps) or (N, [C,] H, W) (images); checks N and (H, W)."""
    a = _np(x)
    ok = a.ndim == 3 if maps else a.ndim in (3, 4)
    if not ok or a.size == 0:
        raise ValueError(f"{name} must have shape {'(N, H, W)' if maps else '(N, C, H, W) or (N, H, W)'}; got {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name} must hold one entry per image ({n}); got {len(a)}")
    if hw is not None and a.shape[-2:] != hw:
        raise ValueError(f"{name} must have the images' height and width {hw}; got {a.shape}")
    return a


def _grey(x):
    """(C, H, W), (1, H, W) or (H, W) -> (H, W) or (H, W, 3) for imshow."""
    x = _np(x)
    if x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    return x


def _outline(ax, mask, color=OUTLINE, lw=1.2):
    m = _np(mask)
    m = m.reshape(m.shape[-2:])
    if m.any():
        ax.contour(m.astype(float), levels=[0.5], colors=[color], linewidths=lw)


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def defect_gallery(images, masks, defects, *, title=None, per_type: int = 1, size: float = 1.6):
    """One good tile and ``per_type`` tiles of each defect type, with the ground-truth outline.

    ``images`` (N, [1,] H, W), ``masks`` the same shape, ``defects`` the type of each image
    (``"good"`` or the defect name).
    """
    images = _stack(images, "images")
    masks = _stack(masks, "masks", len(images), images.shape[-2:])
    if isinstance(defects, str) or len(list(defects)) != len(images):
        raise ValueError(f"defects must name the type of each of the {len(images)} images")
    defects = [str(d) for d in defects]
    if isinstance(per_type, bool) or not isinstance(per_type, (int, np.integer)) or per_type < 1:
        raise ValueError(f"per_type must be a positive integer; got {per_type!r}")
    types = (["good"] if "good" in defects else []) + sorted({d for d in defects if d != "good"})
    picks = []
    for t in types:
        picks += [i for i, d in enumerate(defects) if d == t][: (1 if t == "good" else per_type)]
    fig, axes = plt.subplots(1, len(picks), figsize=(size * len(picks), size * 1.15), squeeze=False)
    for ax, i in zip(axes[0], picks):
        ax.imshow(_grey(images[i]), cmap=GREY, vmin=0, vmax=1)
        _outline(ax, masks[i])
        ax.set_title(defects[i], fontsize=9)
        _off(ax)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def anomaly_figure(X, X_hat, amap, masks, *, index=None, labels=None, map_name="squared error", vmax=None,
                   row_titles=None, title=None, size: float = 2.0):
    """The lecture's figure: input, reconstruction, error heatmap, and the input with the ground-truth outline.

    One row per image in ``index`` (default: all).  The heatmaps share one colour scale
    (``vmax``, default the 99.5th percentile of the shown maps) and one colour bar.
    """
    X = _stack(X, "X")
    X_hat = _stack(X_hat, "X_hat")
    if X_hat.shape != X.shape:
        raise ValueError(f"X_hat must have the shape of X, {X.shape}; got {X_hat.shape}")
    amap = _stack(amap, "amap", len(X), X.shape[-2:], maps=True)
    masks = _stack(masks, "masks", len(X), X.shape[-2:])
    index = list(range(len(X))) if index is None else [int(i) for i in np.atleast_1d(index)]
    if not index or any(not -len(X) <= i < len(X) for i in index):
        raise ValueError(f"index must hold at least one image index in [0, {len(X)}); got {index}")
    if row_titles is not None and len(row_titles) != len(index):
        raise ValueError(f"row_titles must hold one title per shown image ({len(index)}); got {len(row_titles)}")
    shown = amap[index]
    vmax = float(np.percentile(shown, 99.5)) if vmax is None else float(vmax)
    n = len(index)
    head = 0.75 if title else 0.4
    width, height = 4 * size + 0.9, n * size + head + 0.1
    fig, axes = plt.subplots(n, 4, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.3 / width, right=1 - 0.85 / width, bottom=0.05 / height, top=1 - head / height,
                        wspace=0.05, hspace=0.08)
    cols = ["input $x$", r"reconstruction $\hat x$", f"anomaly map ({map_name})", "ground truth"]
    im = None
    for r, i in enumerate(index):
        a = axes[r]
        a[0].imshow(_grey(X[i]), cmap=GREY, vmin=0, vmax=1)
        a[1].imshow(_grey(X_hat[i]), cmap=GREY, vmin=0, vmax=1)
        im = a[2].imshow(amap[i], cmap=HEAT, vmin=0, vmax=vmax)
        a[3].imshow(_grey(X[i]), cmap=GREY, vmin=0, vmax=1)
        _outline(a[3], masks[i])
        _outline(a[2], masks[i], lw=0.8)
        for ax in a:
            _off(ax)
        if row_titles is not None:
            a[0].set_ylabel(row_titles[r], fontsize=9)
        elif labels is not None:
            a[0].set_ylabel(str(labels[i]), fontsize=9)
    for c, ax in enumerate(axes[0]):
        ax.set_title(cols[c], fontsize=10)
    top, bottom = axes[0, 3].get_position(), axes[-1, 3].get_position()
    cax = fig.add_axes([bottom.x1 + 0.12 / width, bottom.y0, 0.12 / width, top.y1 - bottom.y0])
    cbar = fig.colorbar(im, cax=cax)
    cbar.set_label(map_name)
    if title:
        fig.suptitle(title, y=1 - 0.1 / height, fontsize=12)
    return fig


def score_histograms(scores, labels, *, threshold=None, ax=None, title=None, bins: int = 20):
    """Histograms of the image scores of good (0) and defective (1) test images, with the threshold."""
    s, y = _np(scores).ravel(), _np(labels).ravel()
    if len(s) != len(y) or len(s) == 0:
        raise ValueError(f"scores and labels must be non-empty and of the same length; got {len(s)} and {len(y)}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    y = y.astype(bool)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3))
    edges = np.histogram_bin_edges(s, bins=bins)
    ax.hist(s[~y], bins=edges, alpha=0.65, color="#1f77b4", label="good")
    ax.hist(s[y], bins=edges, alpha=0.65, color="#d62728", label="defective")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1.2, label="threshold")
    ax.set(xlabel="image score", ylabel="test images", title=title or "Image scores")
    ax.legend(frameon=False, fontsize=8)
    ax.figure.tight_layout()
    return ax
