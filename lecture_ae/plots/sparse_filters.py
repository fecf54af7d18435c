"""Figures for the convolutional and the topographic sparse-coding chapters (drawn for the book's column)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .._checks import as_tensor
from ._args import mapping
from .sparse import atom_grid
from .style import COLUMN_WIDTH

__all__ = [
    "filter_bank",
    "replica_comparison",
    "replica_pairs",
    "replica_pairs_comparison",
    "csc_reconstruction",
    "topographic_map",
    "topographic_maps",
    "similarity_bars",
    "similarity_by_distance_curves",
    "similarity_figure",
]

_COLORS = {"patch": "#d62728", "conv": "#1f77b4", "topo": "#2ca02c", "l1": "#7f7f7f"}


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _as_columns(W, patch_shape=None):
    """Filters (h, k, k) or a dictionary (d, h) -> ((d, h) columns, patch_shape)."""
    W = as_tensor(W, "W", shape="(h, k, k) or (d, h)")
    if W.dim() == 3:
        return W.reshape(W.shape[0], -1).T, tuple(W.shape[1:])
    if W.dim() != 2:
        raise ValueError(f"W must have shape (h, k, k) or (d, h); got {tuple(W.shape)}")
    if patch_shape is None:
        k = int(round(np.sqrt(W.shape[0])))
        patch_shape = (k, k)
    return W, tuple(patch_shape)


def filter_bank(W, patch_shape=None, *, ax=None, title=None, ncols=None, order=None):
    """Draw a filter bank (h, k, k) or a patch dictionary (d, h) as a grid of small images (grey = 0)."""
    cols, shape = _as_columns(W, patch_shape)
    return atom_grid(cols, shape, ax=ax, title=title, ncols=ncols, order=order)


def replica_comparison(banks, replica_matrices, *, ncols=None):
    """Filter banks side by side, each atom ordered by its best replica score; below, the scores.

    ``banks`` maps a name to a filter bank (h, k, k) or patch dictionary (d, h);
    ``replica_matrices`` maps the same names to the (h, h) matrices of
    :func:`lecture_ae.sparse.convolutional.replica_scores`.  Bottom panel: for every
    atom, the score of its best replica among the other atoms (sorted).
    """
    names = list(banks)
    if not names or set(replica_matrices) != set(names):
        raise ValueError(f"replica_matrices must have one matrix per bank {names}; got {list(replica_matrices)}")
    n = len(names)
    fig = plt.figure(figsize=(COLUMN_WIDTH, COLUMN_WIDTH / n + 3.2), layout="constrained")
    gs = fig.add_gridspec(2, n, height_ratios=[COLUMN_WIDTH / n + 0.4, 2.8])
    ax_s = fig.add_subplot(gs[1, :])
    for i, name in enumerate(names):
        best = _np(replica_matrices[name]).max(axis=1)
        order = np.argsort(-best)
        ax = fig.add_subplot(gs[0, i])
        filter_bank(banks[name], ax=ax, ncols=ncols, order=order.tolist(),
                    title=f"{name}\nmean best replica score {best.mean():.2f}")
        color = list(_COLORS.values())[i % len(_COLORS)]
        ax_s.plot(np.arange(1, len(best) + 1), np.sort(best)[::-1], marker="o", ms=3, lw=1.5, color=color, label=name)
    ax_s.axhline(0.8, color="0.5", ls=":", lw=1)
    ax_s.set_ylim(0, 1.02)
    ax_s.set_xlabel("atom (sorted by its score)")
    ax_s.set_ylabel("best replica score")
    ax_s.legend(frameon=False, loc="lower left")
    ax_s.grid(alpha=0.3)
    return fig


def _top_pairs(R, n_pairs):
    R = _np(R).copy()
    R[np.tril_indices_from(R)] = -1
    flat = np.argsort(-R, axis=None, kind="stable")[:n_pairs]
    return [(int(j), int(l), float(R[j, l])) for j, l in (np.unravel_index(f, R.shape) for f in flat)]


def _draw_pairs(fig, W, replica_matrix, patch_shape, n_pairs, title):
    cols, shape = _as_columns(W, patch_shape)
    A = _np(cols).T.reshape(-1, *shape)
    pairs = _top_pairs(replica_matrix, n_pairs)
    axes = np.atleast_2d(fig.subplots(2, n_pairs)).reshape(2, n_pairs)
    for c, (j, l, score) in enumerate(pairs):
        for r, idx in enumerate((j, l)):
            a = A[idx] / (np.abs(A[idx]).max() + 1e-12)
            axes[r, c].imshow(a, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[0, c].set_title(f"{score:.2f}")
    if title:
        fig.suptitle(title)
    return axes


def replica_pairs(W, replica_matrix, patch_shape=None, *, n_pairs=6, title=None):
    """The ``n_pairs`` most replicated pairs of atoms, one above the other, with their score."""
    fig = plt.figure(figsize=(min(COLUMN_WIDTH, 0.9 * n_pairs + 0.3), 2.3), layout="constrained")
    _draw_pairs(fig, W, replica_matrix, patch_shape, n_pairs, title)
    return fig


def replica_pairs_comparison(banks, replica_matrices, *, n_pairs=6):
    """:func:`replica_pairs` for several banks, one block of pairs per bank (same names as
    :func:`replica_comparison`), each block titled with the bank's name."""
    names = list(banks)
    if not names or set(replica_matrices) != set(names):
        raise ValueError(f"replica_matrices must have one matrix per bank {names}; got {list(replica_matrices)}")
    fig = plt.figure(figsize=(min(COLUMN_WIDTH, 0.9 * n_pairs + 0.3), 2.3 * len(names)), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(len(names), 1))
    for sub, name in zip(subs, names):
        _draw_pairs(sub, banks[name], replica_matrices[name], None, n_pairs, name)
    return fig


def csc_reconstruction(x, x_hat, S, *, n_maps=4, title=None):
    """Image, its CSC reconstruction and the error (top row); the ``n_maps`` most used code maps (below)."""
    x, x_hat, S = _np(x), _np(x_hat), _np(S)
    if x.ndim != 2 or x_hat.shape != x.shape:
        raise ValueError(f"x and x_hat must be images (H, W) of the same shape; got {x.shape} and {x_hat.shape}")
    if S.ndim != 3:
        raise ValueError(f"S must hold the code maps (h, H', W'); got shape {S.shape}")
    if isinstance(n_maps, bool) or not isinstance(n_maps, (int, np.integer)) or not 1 <= n_maps <= len(S):
        raise ValueError(f"n_maps must be an integer in [1, {len(S)}]; got {n_maps!r}")
    usage = np.abs(S).reshape(S.shape[0], -1).sum(axis=1)
    top = np.argsort(-usage)[:n_maps]
    ncols = max(3, n_maps)
    side = (COLUMN_WIDTH - 0.9) / ncols
    fig = plt.figure(figsize=(COLUMN_WIDTH, 2 * side + 1.2), layout="constrained")
    top_fig, bottom_fig = fig.subfigures(2, 1)
    axes_top = top_fig.subplots(1, ncols)
    axes_bottom = bottom_fig.subplots(1, ncols)
    lim = np.abs(x).max()
    for ax, img, name in zip(axes_top, (x, x_hat, x - x_hat), ("image $x$", r"$\sum_j W_j * s_j$", "error")):
        im = ax.imshow(img, cmap="gray", vmin=-lim, vmax=lim)
        ax.set_title(name)
    for ax in axes_top[3:]:
        ax.axis("off")
    for ax, j in zip(axes_bottom, top):
        m = np.abs(S[j]).max() + 1e-12
        im2 = ax.imshow(S[j], cmap="RdBu_r", vmin=-m, vmax=m)
        ax.set_title(f"$s_{{{j}}}$: {(S[j] != 0).mean():.1%}")
    for ax in axes_bottom[n_maps:]:
        ax.axis("off")
    for ax in (*axes_top, *axes_bottom):
        ax.set_xticks([])
        ax.set_yticks([])
    top_fig.colorbar(im, ax=axes_top[:3], shrink=0.9, label="grey level")
    bottom_fig.colorbar(im2, ax=axes_bottom[:n_maps], shrink=0.9, label="code value")
    if title:
        fig.suptitle(title)
    return fig


def topographic_map(W, grid, patch_shape=None, *, ax=None, title=None):
    """The atoms (columns of W, d x h) drawn at their places on the g1 x g2 grid."""
    g1, g2 = grid
    cols, shape = _as_columns(W, patch_shape)
    if cols.shape[1] != g1 * g2:
        raise ValueError(f"grid {grid} holds {g1 * g2} atoms but W has {cols.shape[1]}")
    return atom_grid(cols, shape, ncols=g2, ax=ax, title=title)


def topographic_maps(dictionaries, grid, patch_shape=None):
    """:func:`topographic_map` of several dictionaries (name -> W (d, h)), side by side."""
    mapping(dictionaries, "dictionaries", "name to a dictionary W (d, h)")
    n = len(dictionaries)
    fig, axes = plt.subplots(1, n, figsize=(COLUMN_WIDTH, COLUMN_WIDTH / n + 0.45), squeeze=False,
                             layout="constrained")
    for ax, (name, W) in zip(axes[0], dictionaries.items()):
        topographic_map(W, grid, patch_shape, ax=ax, title=name)
    return fig


def similarity_bars(results, *, ax=None, title="grid neighbours vs other pairs"):
    """Bars of mean |cos| between grid neighbours and between other pairs, one group per dictionary.

    ``results`` maps a name to the dict of :func:`lecture_ae.sparse.topographic.neighbour_similarity`.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH / 2, 3.4), layout="constrained")
    names = list(results)
    x = np.arange(len(names))
    nb = [results[n]["neighbours"] for n in names]
    ot = [results[n]["others"] for n in names]
    ax.bar(x - 0.18, nb, 0.36, color="#2ca02c", label="grid neighbours")
    ax.bar(x + 0.18, ot, 0.36, color="#7f7f7f", label="other pairs")
    for i, n in enumerate(names):
        ax.text(x[i], max(nb[i], ot[i]) + 0.01, f"ratio {results[n]['ratio']:.2f}", ha="center", va="bottom")
    ax.set_xticks(x, [n.replace(" (", "\n(") for n in names])
    ax.set_ylabel(r"mean $|\cos(w_j, w_l)|$")
    ax.set_ylim(0, max(nb + ot) * 1.45)
    ax.set_title(title)
    ax.legend(frameon=False, loc="upper right")
    return ax


def similarity_by_distance_curves(results, *, ax=None, title="similarity against distance on the grid"):
    """Mean |cos| between atoms against their grid distance, one curve per dictionary.

    ``results`` maps a name to the dict of :func:`lecture_ae.sparse.topographic.similarity_by_distance`.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH / 2, 3.4), layout="constrained")
    colors = ["#2ca02c", "#7f7f7f", "#1f77b4", "#d62728"]
    for i, (name, r) in enumerate(results.items()):
        ax.plot(r["distance"], r["similarity"], marker="o", lw=1.8, color=colors[i % len(colors)], label=name)
    ax.set_xlabel("distance on the grid (window steps)")
    ax.set_ylabel(r"mean $|\cos(w_j, w_l)|$")
    ax.set_xticks(sorted({d for r in results.values() for d in r["distance"]}))
    ax.set_ylim(0, None)
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


def similarity_figure(neighbours, by_distance):
    """:func:`similarity_bars` (left) and :func:`similarity_by_distance_curves` (right) in one figure."""
    mapping(neighbours, "neighbours", "dictionary name to its results")
    mapping(by_distance, "by_distance", "dictionary name to its results")
    fig, (a, b) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH, 3.6), layout="constrained")
    similarity_bars(neighbours, ax=a, title="neighbours vs other pairs")
    similarity_by_distance_curves(by_distance, ax=b, title="by distance on the grid")
    return fig
