"""Figures of the anomaly-detection chapter: the defect gallery, the lecture's heatmap figure, score histograms."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ._args import mapping
from .style import COLUMN_WIDTH, MIN_FONT_PT

__all__ = ["defect_gallery", "defect_galleries", "anomaly_figure", "score_histograms", "threshold_histograms",
           "GREY", "HEAT", "OUTLINE"]

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


def _gallery_picks(images, masks, defects, per_type, name=""):
    images = _stack(images, f"{name}images")
    masks = _stack(masks, f"{name}masks", len(images), images.shape[-2:])
    if isinstance(defects, str) or len(list(defects)) != len(images):
        raise ValueError(f"{name}defects must name the type of each of the {len(images)} images")
    defects = [str(d) for d in defects]
    if isinstance(per_type, bool) or not isinstance(per_type, (int, np.integer)) or per_type < 1:
        raise ValueError(f"per_type must be a positive integer; got {per_type!r}")
    types = (["good"] if "good" in defects else []) + sorted({d for d in defects if d != "good"})
    picks = []
    for t in types:
        picks += [i for i, d in enumerate(defects) if d == t][: (1 if t == "good" else per_type)]
    return images, masks, defects, picks


def _gallery_tile(ax, image, mask, title):
    ax.imshow(_grey(image), cmap=GREY, vmin=0, vmax=1)
    _outline(ax, mask)
    ax.set_title(title)
    _off(ax)


def defect_gallery(images, masks, defects, *, title=None, per_type: int = 1, size: float | None = None):
    """One good tile and ``per_type`` tiles of each defect type, with the ground-truth outline.

    ``images`` (N, [1,] H, W), ``masks`` the same shape, ``defects`` the type of each image
    (``"good"`` or the defect name).  ``size``: the side of a tile in inches (default: as large
    as the book's column allows, at most 1.6).
    """
    images, masks, defects, picks = _gallery_picks(images, masks, defects, per_type)
    size = min(1.6, COLUMN_WIDTH / len(picks)) if size is None else float(size)
    fig, axes = plt.subplots(1, len(picks), figsize=(size * len(picks), size * 1.15 + (0.35 if title else 0)),
                             squeeze=False, layout="constrained")
    for ax, i in zip(axes[0], picks):
        _gallery_tile(ax, images[i], masks[i], defects[i])
    if title:
        fig.suptitle(title)
    return fig


def defect_galleries(galleries: dict, *, per_type: int = 1):
    """:func:`defect_gallery` of several data sets, one row each: name -> (images, masks, defects).

    The name labels its row; every row shows one good tile and ``per_type`` tiles per defect type.
    """
    mapping(galleries, "galleries", "name to (images, masks, defects)")
    rows = []
    for name, value in galleries.items():
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            raise ValueError(f"galleries[{name!r}] must be (images, masks, defects)")
        rows.append((name, *_gallery_picks(*value, per_type, name=f"galleries[{name!r}]: ")))
    ncols = max(len(r[-1]) for r in rows)
    size = min(1.6, (COLUMN_WIDTH - 0.3) / ncols)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols + 0.3, (size + 0.3) * len(rows)),
                             squeeze=False, layout="constrained")
    for r, (name, images, masks, defects, picks) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c < len(picks):
                i = picks[c]
                _gallery_tile(ax, images[i], masks[i], defects[i])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name)
    return fig


def anomaly_figure(X, X_hat, amap, masks, *, index=None, labels=None, map_name="squared error", vmax=None,
                   row_titles=None, title=None, size: float | None = None, map_label=None):
    """The lecture's figure: input, reconstruction, error heatmap, and the input with the ground-truth outline.

    One row per image in ``index`` (default: all).  The heatmaps share one colour scale
    (``vmax``, default the 99.5th percentile of the shown maps) and one colour bar.
    ``size``: the side of one image in inches (default: four images and the colour bar fill
    the book's column).  ``map_name`` goes into the heat maps' column title, keep it short
    (``"L2"``); ``map_label`` names the colour bar (default: ``map_name``).
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
    left, gap, foot = 0.35, 0.05, 0.65  # inches: row titles, between images, colour bar below
    size = (COLUMN_WIDTH - left - 0.05 - 3 * gap) / 4 if size is None else float(size)
    head = 0.75 if title else 0.4
    width, height = left + 4 * size + 3 * gap + 0.05, n * size + (n - 1) * gap + head + foot
    fig, axes = plt.subplots(n, 4, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=left / width, right=1 - 0.05 / width, bottom=foot / height, top=1 - head / height,
                        wspace=gap / size, hspace=gap / size)
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
            a[0].set_ylabel(row_titles[r])
        elif labels is not None:
            a[0].set_ylabel(str(labels[i]))
    for c, ax in enumerate(axes[0]):
        ax.set_title(cols[c], fontsize=MIN_FONT_PT)
    # one horizontal colour bar under the heat-map and ground-truth columns, its name to its left
    first, last = axes[-1, 2].get_position(), axes[-1, 3].get_position()
    cax = fig.add_axes([first.x0, 0.22 / height, last.x1 - first.x0, 0.13 / height])
    fig.colorbar(im, cax=cax, orientation="horizontal")
    cax.set_ylabel(map_name if map_label is None else map_label, rotation=0, ha="right", va="center", labelpad=8)
    if title:
        fig.suptitle(title, y=1 - 0.1 / height)
    return fig


def score_histograms(scores, labels, *, threshold=None, ax=None, title=None, bins: int = 20, legend: bool = True):
    """Histograms of the image scores of good (0) and defective (1) test images, with the threshold."""
    s, y = _np(scores).ravel(), _np(labels).ravel()
    if len(s) != len(y) or len(s) == 0:
        raise ValueError(f"scores and labels must be non-empty and of the same length; got {len(s)} and {len(y)}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    y = y.astype(bool)
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH * 0.75, 3.2), layout="constrained")
    edges = np.histogram_bin_edges(s, bins=bins)
    ax.hist(s[~y], bins=edges, alpha=0.65, color="#1f77b4", label="good")
    ax.hist(s[y], bins=edges, alpha=0.65, color="#d62728", label="defective")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1.2, label="threshold")
    ax.set(xlabel="image score", ylabel="test images", title=title or "Image scores")
    if legend:
        ax.legend(frameon=False)
    return ax


def threshold_histograms(panels: dict, *, bins: int = 20):
    """:func:`score_histograms` side by side, one legend below: title -> (scores, labels, threshold)."""
    mapping(panels, "panels", "title to (scores, labels, threshold)")
    for name, value in panels.items():
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            raise ValueError(f"panels[{name!r}] must be (scores, labels, threshold)")
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(COLUMN_WIDTH, 3.3), squeeze=False, layout="constrained")
    for k, (ax, (name, (scores, labels, threshold))) in enumerate(zip(axes[0], panels.items())):
        score_histograms(scores, labels, threshold=threshold, ax=ax, title=name, bins=bins, legend=False)
        if k:
            ax.set_ylabel("")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=3, frameon=False)
    return fig
