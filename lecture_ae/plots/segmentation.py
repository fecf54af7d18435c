"""Figures of the U-Net chapter: cell images with mask borders, predicted-mask overlays, feature maps."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D

from .style import COLUMN_WIDTH

__all__ = ["cell_examples", "segmentation_grid", "feature_maps", "score_bars", "OVERLAY", "BORDER"]

IMAGE_CMAP = "gray"
OVERLAY = "#ff7f0e"  # predicted mask
BORDER = "#00e5ff"  # ground-truth border
FEATURE_CMAP = "magma"


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _image(ax, img, title=None):
    ax.imshow(_np(img), cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def _border(ax, mask, color=BORDER, lw=1.2):
    m = _np(mask).astype(float)
    if 0 < m.sum() < m.size:
        ax.contour(m, levels=[0.5], colors=[color], linewidths=lw)


def _overlay(ax, mask, color=OVERLAY, alpha=0.45):
    m = _np(mask).astype(bool)
    rgba = np.zeros(m.shape + (4,))
    rgba[..., :3] = plt.matplotlib.colors.to_rgb(color)
    rgba[..., 3] = alpha * m
    ax.imshow(rgba, interpolation="nearest")


def cell_examples(X, Y, *, n: int = 6, title="Generated cell images with the ground-truth border"):
    """Row 1: images ``X`` (N, 1, H, W); row 2: the same with the border of the masks ``Y``."""
    n = min(n, len(X))
    side = min(1.9, (COLUMN_WIDTH - 0.5) / n)
    fig, axes = plt.subplots(2, n, figsize=(side * n + 0.5, 2 * side + (0.45 if title else 0.1)), squeeze=False,
                             layout="constrained")
    for i in range(n):
        _image(axes[0, i], X[i, 0])
        _image(axes[1, i], X[i, 0])
        _border(axes[1, i], Y[i, 0])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("+ border")
    if title:
        fig.suptitle(title)
    return fig


def segmentation_grid(X, Y, masks: dict, *, index=(0, 1, 2), names: dict | None = None, scores: dict | None = None,
                      title="Predicted mask (orange) and ground-truth border (cyan)"):
    """The lecture's figure: one row per image, columns = input, then one predicted-mask overlay per method.

    ``masks`` maps a method to masks (N, 1, H, W); ``names`` gives column titles and
    ``scores`` (method -> per-image IoU (N,)) writes each image's IoU in its panel.
    """
    names = names or {}
    methods = list(masks)
    rows, cols = len(index), 1 + len(methods)
    side = min(2.2, COLUMN_WIDTH / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows + (0.8 if title else 0.5)), squeeze=False,
                             layout="constrained")
    for r, i in enumerate(index):
        _image(axes[r, 0], X[i, 0], "input" if r == 0 else None)
        for c, m in enumerate(methods, start=1):
            ax = axes[r, c]
            _image(ax, X[i, 0], names.get(m, m) if r == 0 else None)
            _overlay(ax, masks[m][i, 0])
            _border(ax, Y[i, 0])
            if scores is not None and m in scores:
                ax.text(0.03, 0.03, f"IoU {float(scores[m][i]):.2f}", transform=ax.transAxes,
                        color="white", bbox=dict(facecolor="black", alpha=0.6, pad=1.5, edgecolor="none"))
    handles = [plt.Rectangle((0, 0), 1, 1, color=OVERLAY, alpha=0.6), Line2D([0], [0], color=BORDER, lw=1.5)]
    fig.legend(handles, ["predicted mask", "ground-truth border"], loc="outside lower center", ncol=2, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def feature_maps(features: dict, keys=("skip0", "bottleneck"), *, n_channels: int = 6, image=None,
                 title="Feature maps: a shortcut vs the bottleneck"):
    """One row per map in ``keys`` (tensors (1, C, h, w) or (C, h, w)): its ``n_channels`` most active channels.

    Channels are ordered by mean activation and each is scaled to its own range; the
    row label gives the map's resolution.  ``image`` (H, W), when given, is shown first.
    """
    keys = [k for k in keys if k in features]
    if not keys:
        raise ValueError(f"features has none of the maps {keys}; it has {list(features)}")
    extra = 1 if image is not None else 0
    side = min(1.7, (COLUMN_WIDTH - 0.6) / (n_channels + extra))
    fig, axes = plt.subplots(len(keys), n_channels + extra, figsize=(side * (n_channels + extra) + 0.6,
                                                                     (side + 0.15) * len(keys) + (0.45 if title else 0.1)),
                             squeeze=False, layout="constrained")
    for r, key in enumerate(keys):
        f = _np(features[key])
        f = f[0] if f.ndim == 4 else f
        order = np.argsort(-f.reshape(len(f), -1).mean(axis=1))[:n_channels]
        if extra:
            if r == 0:
                _image(axes[r, 0], image, "input")
            else:
                axes[r, 0].axis("off")
        for c in range(n_channels):
            ax = axes[r, c + extra]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(order):
                ax.axis("off")
                continue
            ax.imshow(f[order[c]], cmap=FEATURE_CMAP, interpolation="nearest")
            if c == 0:
                ax.set_ylabel(f"{key}\n{f.shape[1]} x {f.shape[2]}")
    if title:
        fig.suptitle(title)
    return fig


def score_bars(table, column: str = "IoU", *, title="Test IoU of every method"):
    """Horizontal bars of ``table[column]`` (a DataFrame indexed by method)."""
    if column not in table.columns or len(table) == 0:
        raise ValueError(f"table must be a non-empty DataFrame with a column {column!r}")
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 0.5 * len(table) + 1.2), layout="constrained")
    vals = table[column]
    colors = ["#d62728" if "U-Net" == m else "#7f7f7f" if "Otsu" in m else "#1f77b4" for m in vals.index]
    ax.barh(list(vals.index)[::-1], list(vals.values)[::-1], color=colors[::-1])
    for k, v in enumerate(list(vals.values)[::-1]):
        ax.text(v + 0.01, k, f"{v:.3f}", va="center")
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(column)
    if title:
        ax.set_title(title)
    return fig
