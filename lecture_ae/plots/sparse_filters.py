"""Figures for the convolutional and the topological sparse-coding chapters."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .._checks import as_tensor
from .sparse import atom_grid

__all__ = [
    "filter_bank",
    "replica_comparison",
    "replica_pairs",
    "replica_pairs_comparison",
    "csc_reconstruction",
    "topographic_map",
    "similarity_bars",
    "similarity_by_distance_curves",
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


def replica_comparison(banks, replica_matrices, *, ncols=8):
    """Filter banks side by side, each atom ordered by its best replica score, plus the scores.

    ``banks`` maps a name to a filter bank (h, k, k) or patch dictionary (d, h);
    ``replica_matrices`` maps the same names to the (h, h) matrices of
    :func:`lecture_ae.sparse.convolutional.replica_scores`.  Right panel: for every
    atom, the score of its best replica among the other atoms (sorted).
    """
    names = list(banks)
    fig = plt.figure(figsize=(4.2 * len(names) + 4.6, 4.4), layout="constrained")
    gs = fig.add_gridspec(1, len(names) + 1, width_ratios=[1.0] * len(names) + [1.1])
    ax_s = fig.add_subplot(gs[0, -1])
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
    ax_s.set_xlabel("atom (sorted)")
    ax_s.set_ylabel(r"best replica score $\max_{l,\,\tau} |\mathrm{ncc}(w_j, \tau w_l)|$")
    ax_s.set_title("how much each atom is a shifted copy of another")
    ax_s.legend(frameon=False)
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
        axes[0, c].set_title(f"{score:.2f}", fontsize=10)
    if title:
        fig.suptitle(title)
    return axes


def replica_pairs(W, replica_matrix, patch_shape=None, *, n_pairs=6, title=None):
    """The ``n_pairs`` most replicated pairs of atoms, one above the other, with their score."""
    fig = plt.figure(figsize=(1.3 * n_pairs + 0.6, 3.0), layout="constrained")
    _draw_pairs(fig, W, replica_matrix, patch_shape, n_pairs, title)
    return fig


def replica_pairs_comparison(banks, replica_matrices, *, n_pairs=6):
    """:func:`replica_pairs` for several banks, one block of pairs per bank (same names as
    :func:`replica_comparison`), each block titled with the bank's name."""
    names = list(banks)
    fig = plt.figure(figsize=(1.3 * n_pairs + 0.6, 3.0 * len(names)), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(len(names), 1))
    for sub, name in zip(subs, names):
        _draw_pairs(sub, banks[name], replica_matrices[name], None, n_pairs,
                    f"{name}: the {n_pairs} most similar pairs (replica score above each pair)")
    return fig


def csc_reconstruction(x, x_hat, S, *, n_maps=4, title=None):
    """Image, its CSC reconstruction, the error, and the ``n_maps`` most used code maps."""
    x, x_hat, S = _np(x), _np(x_hat), _np(S)
    usage = np.abs(S).reshape(S.shape[0], -1).sum(axis=1)
    top = np.argsort(-usage)[:n_maps]
    fig, axes = plt.subplots(1, 3 + n_maps, figsize=(2.3 * (3 + n_maps), 2.8), layout="constrained")
    lim = np.abs(x).max()
    for ax, img, name in zip(axes[:3], (x, x_hat, x - x_hat), ("image $x$", r"$\sum_j W_j * s_j$", "error")):
        im = ax.imshow(img, cmap="gray", vmin=-lim, vmax=lim)
        ax.set_title(name)
    for ax, j in zip(axes[3:], top):
        m = np.abs(S[j]).max() + 1e-12
        im2 = ax.imshow(S[j], cmap="RdBu_r", vmin=-m, vmax=m)
        ax.set_title(f"code map $s_{{{j}}}$\n{(S[j] != 0).mean():.1%} non-zero", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:3], shrink=0.8, label="grey level (high-passed)")
    fig.colorbar(im2, ax=axes[3:], shrink=0.8, label="code value")
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


def similarity_bars(results, *, ax=None, title="grid neighbours vs other pairs"):
    """Bars of mean |cos| between grid neighbours and between other pairs, one group per dictionary.

    ``results`` maps a name to the dict of :func:`lecture_ae.sparse.topographic.neighbour_similarity`.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4), layout="constrained")
    names = list(results)
    x = np.arange(len(names))
    nb = [results[n]["neighbours"] for n in names]
    ot = [results[n]["others"] for n in names]
    ax.bar(x - 0.18, nb, 0.36, color="#2ca02c", label="grid neighbours")
    ax.bar(x + 0.18, ot, 0.36, color="#7f7f7f", label="other pairs")
    for i, n in enumerate(names):
        ax.text(x[i], max(nb[i], ot[i]) + 0.01, f"ratio {results[n]['ratio']:.2f}", ha="center", va="bottom")
    ax.set_xticks(x, names)
    ax.set_ylabel(r"mean $|\cos(w_j, w_l)|$")
    ax.set_ylim(0, max(nb + ot) * 1.45)
    ax.set_title(title)
    ax.legend(frameon=False, loc="upper right", ncols=2)
    return ax


def similarity_by_distance_curves(results, *, ax=None, title="similarity against distance on the grid"):
    """Mean |cos| between atoms against their grid distance, one curve per dictionary.

    ``results`` maps a name to the dict of :func:`lecture_ae.sparse.topographic.similarity_by_distance`.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4), layout="constrained")
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
