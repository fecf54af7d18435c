"""Figures for the autoencoder, denoising and compression chapters (drawn for the book's column)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from ._args import known_keys, mapping
from .style import COLUMN_WIDTH

__all__ = [
    "image_rows",
    "filter_grid",
    "filter_panels",
    "activation_rate_bars",
    "training_curves",
    "manifold_arrows",
    "rate_distortion",
    "psnr_bars",
]

CMAP = "gray_r"  # digits: ink dark on white paper
_METHOD_COLORS = {"AE": "#d62728", "PCA": "#1f77b4", "noisy": "#7f7f7f", "AE (clean training)": "#ff7f0e", "DAE": "#d62728"}
_LABEL_WIDTH = 1.3  # inches left of the images for the row labels of image_rows


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_rows(rows: dict, image_shape, *, col_titles=None, title=None, cmap=CMAP, vmin=0.0, vmax=1.0, scale=None):
    """A grid of images: one row per entry of ``rows`` (label -> images (n, H*W)), the label at the left.

    Every row must hold the same number n of images.  ``scale`` is the side of one image in
    inches (default: as large as the book's column allows, at most 0.85).  Returns the figure.
    """
    if not rows:
        raise ValueError("rows must map at least one label to images (n, H*W)")
    arrays = {k: _np(v).reshape(len(v), *image_shape) for k, v in rows.items()}
    n = {len(v) for v in arrays.values()}
    if len(n) != 1:
        raise ValueError(f"every row must hold the same number of images; got {[len(v) for v in arrays.values()]}")
    n = n.pop()
    if scale is None:
        scale = min(0.85, (COLUMN_WIDTH - _LABEL_WIDTH) / n)
    elif not scale > 0:
        raise ValueError(f"scale must be a positive number of inches; got {scale!r}")
    head = (0.35 if title else 0.0) + (0.3 if col_titles is not None else 0.0)
    fig, axes = plt.subplots(len(arrays), n, figsize=(scale * n + _LABEL_WIDTH, scale * len(arrays) + head + 0.05),
                             squeeze=False, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    for r, (label, imgs) in enumerate(arrays.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(imgs[c], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center")
            if r == 0 and col_titles is not None:
                ax.set_title(str(col_titles[c]))
    if title:
        fig.suptitle(title)
    return fig


def filter_grid(F, image_shape, *, ax=None, title=None, dead=None, ncols=None):
    """Filters (rows of ``F`` (h, H*W), e.g. the encoder V or the transposed decoder W.T) as small images.

    Each filter is scaled symmetrically around 0 (``RdBu_r``: red positive, blue negative,
    white 0).  ``dead`` (a boolean (h,) mask) draws a black frame around dead units.
    """
    F = _np(F)
    if F.ndim != 2:
        raise ValueError(f"F must hold one filter per row, shape (h, H*W); got {F.shape}")
    h = F.shape[0]
    H, W = image_shape
    if H * W != F.shape[1]:
        raise ValueError(f"image_shape {tuple(image_shape)} does not match filters of {F.shape[1]} pixels")
    ncols = ncols or int(math.ceil(math.sqrt(h)))
    nrows = int(math.ceil(h / ncols))
    pad = 1
    canvas = np.full((nrows * (H + pad) + pad, ncols * (W + pad) + pad), np.nan)
    for j in range(h):
        r, c = divmod(j, ncols)
        f = F[j].reshape(H, W)
        canvas[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = f / (np.abs(f).max() + 1e-12)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(COLUMN_WIDTH, 0.5 * ncols + 1), 0.5 * nrows + 1), layout="constrained")
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="white")
    im = ax.imshow(canvas, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    if dead is not None:
        for j in np.flatnonzero(_np(dead)):
            r, c = divmod(int(j), ncols)
            ax.add_patch(plt.Rectangle((pad + c * (W + pad) - 0.5, pad + r * (H + pad) - 0.5), W, H, fill=False, lw=1.2, ec="black"))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return im


def filter_panels(panels: dict, image_shape, *, dead=None, ncols=None, stacked=False,
                  colorbar_label="weight / max |weight|"):
    """Several :func:`filter_grid` panels (title -> filters (h, H*W)) with one shared colour bar.

    Side by side, or one above the other with ``stacked=True``; ``dead`` maps a title to
    the dead-unit mask of that panel.  Returns the figure.
    """
    mapping(panels, "panels", "title to filters (h, H*W)")
    dead = known_keys(dead, panels, "dead", "panels")
    n = len(panels)
    if stacked:
        h = max(_np(F).shape[0] for F in panels.values())
        cols = ncols or h
        rows = int(math.ceil(h / cols))
        height = n * ((COLUMN_WIDTH - 1.0) / cols * rows + 0.35)
        fig, axes = plt.subplots(n, 1, figsize=(COLUMN_WIDTH, height), squeeze=False, layout="constrained")
    else:
        fig, axes = plt.subplots(1, n, figsize=(COLUMN_WIDTH, (COLUMN_WIDTH - 0.9) / n + 0.7), squeeze=False,
                                 layout="constrained")
    im = None
    for ax, (title, F) in zip(axes.ravel(), panels.items()):
        im = filter_grid(F, image_shape, ax=ax, title=title, dead=dead.get(title), ncols=ncols)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig


def activation_rate_bars(rates: dict, *, ax=None, title="How often each unit fires"):
    """Sorted activation rates of the units (label -> (h,) rates), one line of bars per model; dead units at 0."""
    mapping(rates, "rates", "model name to its units' activation rates (h,)")
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.2), layout="constrained")
    width = 0.8 / len(rates)
    for k, (label, r) in enumerate(rates.items()):
        r = np.sort(_np(r))[::-1]
        x = np.arange(len(r)) + k * width
        dead = int((r == 0).sum())
        ax.bar(x, r, width=width, label=f"{label}: {dead} of {len(r)} dead", color=plt.cm.tab10(3 * k % 10))
    ax.set_xlabel("unit (sorted by activation rate)")
    ax.set_ylabel("fraction of test images\non which the unit fires")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(frameon=False)
    return ax


def training_curves(histories: dict, *, ax=None, title="Training", log=True):
    """Training (dashed) and validation (solid) loss per epoch of several :class:`~lecture_ae.train.History`."""
    mapping(histories, "histories", "model name to its training History")
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.4), layout="constrained")
    for k, (label, h) in enumerate(histories.items()):
        color = plt.cm.tab10(k % 10)
        ax.plot(np.arange(1, len(h.train_loss) + 1), h.train_loss, "--", color=color, lw=1)
        if h.val_loss:
            ax.plot(np.arange(1, len(h.val_loss) + 1), h.val_loss, "-", color=color, lw=1.5, label=label)
            ax.plot(h.best_epoch + 1, h.best_val, "o", color=color, ms=4)
        else:
            ax.plot([], [], "--", color=color, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (dashed: train,\nsolid: validation)")
    ax.set_title(title)
    ax.legend(frameon=False)
    return ax


def manifold_arrows(X_clean, X_noisy, X_rec, curve_points, *, field=None, ax=None, title=None):
    """The denoising picture in 2-D: data near a curve, arrows from corrupted points to their reconstructions.

    ``field`` = ``(grid_points (m, 2), displacements (m, 2))`` adds the vector field
    :math:`r(x) - x` of the trained model on a grid, in light grey.  The legend goes below
    the axes.
    """
    X_clean, X_noisy, X_rec, C = (_np(a) for a in (X_clean, X_noisy, X_rec, curve_points))
    for name, a in (("X_clean", X_clean), ("X_noisy", X_noisy), ("X_rec", X_rec), ("curve_points", C)):
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"{name} must hold 2-D points, shape (n, 2); got {a.shape}")
    if X_rec.shape != X_noisy.shape:
        raise ValueError(f"X_rec must hold one reconstruction per corrupted point {X_noisy.shape}; got {X_rec.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 4.4), layout="constrained")
    if field is not None:
        G, U = (_np(a) for a in field)
        ax.quiver(G[:, 0], G[:, 1], U[:, 0], U[:, 1], color="0.7", angles="xy", scale_units="xy", scale=1, width=0.0025)
    ax.scatter(X_clean[:, 0], X_clean[:, 1], s=4, color="0.55", label="data $x$", zorder=2)
    ax.plot(C[:, 0], C[:, 1], "k-", lw=1.2, label="manifold", zorder=3)
    ax.scatter(X_noisy[:, 0], X_noisy[:, 1], s=10, color="#1f77b4", label=r"corrupted $\tilde x$", zorder=4)
    ax.quiver(X_noisy[:, 0], X_noisy[:, 1], X_rec[:, 0] - X_noisy[:, 0], X_rec[:, 1] - X_noisy[:, 1], color="#d62728",
              angles="xy", scale_units="xy", scale=1, width=0.004, zorder=5, label=r"$f(g(\tilde x)) - \tilde x$")
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=4, frameon=False, columnspacing=1.0,
              handletextpad=0.4)
    if title:
        ax.set_title(title)
    return ax


def rate_distortion(table, *, ax=None, y="psnr", title="Reconstruction quality against code size"):
    """Quality (``psnr`` or ``mse``) against bits per image, one line per (method, bits per number).

    ``table`` is the DataFrame of :func:`lecture_ae.tasks.compression.bottleneck_sweep`.
    """
    if y not in ("psnr", "mse"):
        raise ValueError(f"y must be 'psnr' or 'mse'; got {y!r}")
    missing = {"method", "value_bits", "bits", "latents", y} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)} (use bottleneck_sweep's table)")
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 5.0), layout="constrained")
    styles = {32: "-o", 8: "--s", 4: ":^", 16: "-.d"}
    for (method, b), g in table.groupby(["method", "value_bits"], sort=False):
        g = g.sort_values("bits")
        ax.plot(g["bits"], g[y], styles.get(b, "-x"), color=_METHOD_COLORS.get(method, "k"), label=f"{method}, {b} bits")
        if b == max(table["value_bits"]):
            for _, row in g.iterrows():
                ax.annotate(f"h={row['latents']}", (row["bits"], row[y]), textcoords="offset points",
                            xytext=(4, -13) if method == "AE" else (-6, 6), ha="left" if method == "AE" else "right",
                            color=_METHOD_COLORS.get(method, "k"))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("code size per image (bits) = h x bits per number")
    ax.set_ylabel("test PSNR (dB)" if y == "psnr" else "test MSE per pixel")
    if y == "mse":
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(frameon=False, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              title="method, bits per number")
    return ax


def psnr_bars(table, *, ax=None, title="Denoising digits: test PSNR (higher is better)"):
    """Grouped bars: PSNR per noise kind (rows of ``table``) and method (columns)."""
    if len(table.index) == 0 or len(table.columns) == 0:
        raise ValueError("table must hold one row per noise kind and one column per method")
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.8), layout="constrained")
    kinds, methods = list(table.index), list(table.columns)
    width = 0.8 / len(methods)
    x = np.arange(len(kinds))
    for k, m in enumerate(methods):
        bars = ax.bar(x + (k - (len(methods) - 1) / 2) * width, table[m].to_numpy(), width, label=m,
                      color=_METHOD_COLORS.get(m, plt.cm.tab10(k)))
        ax.bar_label(bars, fmt="%.1f", padding=1)
    ax.set_xticks(x, kinds)
    ax.set_ylabel("PSNR (dB)")
    ax.set_ylim(0, 1.12 * float(np.nanmax(table.to_numpy())))
    ax.set_title(title)
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=len(methods),
              columnspacing=1.0, handletextpad=0.4)
    return ax
