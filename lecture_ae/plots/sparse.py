"""Figures for the sparse-coding chapters."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from .._checks import as_tensor

__all__ = ["atom_grid", "toy_sweep", "objective_curves", "penalties_and_prox"]

_ATOM_COLORS = ("#d62728", "#2ca02c", "#1f77b4", "#9467bd", "#ff7f0e")


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def atom_grid(W, patch_shape, *, ncols=None, ax=None, title=None, order=None):
    """Draw the atoms (columns of W, shape (d, h)) as small images in one grid.

    Each atom is scaled symmetrically around zero (grey = 0), so that the sign
    structure (light vs dark) is comparable across atoms.
    """
    W = _np(as_tensor(W, "W", ndim=2, shape="(d, h)"))
    d, h = W.shape
    ph, pw = patch_shape
    if ph * pw != d:
        raise ValueError(f"patch_shape {patch_shape} does not match d = {d} rows of W")
    ncols = ncols or int(math.ceil(math.sqrt(h)))
    nrows = int(math.ceil(h / ncols))
    pad = 1
    canvas = np.full((nrows * (ph + pad) + pad, ncols * (pw + pad) + pad), np.nan)
    idx = range(h) if order is None else order
    for k, j in enumerate(idx):
        r, c = divmod(k, ncols)
        atom = W[:, j].reshape(ph, pw)
        atom = atom / (np.abs(atom).max() + 1e-12)
        canvas[pad + r * (ph + pad): pad + r * (ph + pad) + ph, pad + c * (pw + pad): pad + c * (pw + pad) + pw] = atom
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * ncols + 1, 0.45 * nrows + 1))
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("white")
    ax.imshow(canvas, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def toy_sweep(X, runs, *, lims=None):
    """The lecture's five-panel figure: one panel per lambda.

    ``runs`` maps lambda to a (W, S) pair learned on the 2-D data X (N, 2).  Each
    panel shows the data (grey), the reconstructions W s_i coloured by how many
    sources they use (0, 1, 2 or 3), and the three atoms as arrows.
    """
    X = _np(X)
    lams = list(runs)
    fig, axes = plt.subplots(1, len(lams), figsize=(3.2 * len(lams), 3.6), sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    lim = lims or 1.1 * np.abs(X).max()
    active_colors = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#d62728"]
    for ax, lam in zip(axes, lams):
        W, S = (_np(a) for a in runs[lam])
        R = S @ W.T
        n_active = (np.abs(S) > 0).sum(axis=1)
        ax.scatter(X[:, 0], X[:, 1], s=8, c="0.82", label="data $x_i$", zorder=2)
        for k in range(4):
            sel = n_active == k
            if sel.any():
                ax.scatter(R[sel, 0], R[sel, 1], s=7, c=active_colors[k], label=f"$\\|s_i\\|_0={k}$", zorder=3)
        for j in range(W.shape[1]):
            w = W[:, j]
            if np.linalg.norm(w) > 1e-12:
                u = w / np.linalg.norm(w) * 2 * lim
                ax.plot([-u[0], u[0]], [-u[1], u[1]], ls="--", lw=0.8, color=_ATOM_COLORS[j % 5], zorder=1)
            ax.annotate("", xy=w, xytext=(0, 0), zorder=5,
                        arrowprops=dict(arrowstyle="-|>", color="k", lw=2.5, mutation_scale=14))
        ax.set_title(f"$\\lambda = {lam:g}$")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.9", lw=0.8, zorder=0)
        ax.axvline(0, color="0.9", lw=0.8, zorder=0)
    axes[0].legend(loc="lower left", fontsize=7, framealpha=0.9)
    fig.suptitle("data (grey), reconstructions $W s_i$ coloured by the number of active sources, "
                 "learned atoms $w_j$ (black arrows, dashed: their lines)")
    fig.tight_layout()
    return fig


def objective_curves(curves, *, x="seconds", ax=None, best=None, logy=True, title=None):
    """Objective against wall time (or samples seen) for several runs.

    ``curves`` maps a label to a :class:`~lecture_ae.sparse.DictionaryLearningResult`
    (or anything with ``objective`` and ``seconds`` / ``samples_seen`` lists).  With
    ``best`` given the y axis is the gap to it, on a log scale.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for label, res in curves.items():
        xs = np.asarray(getattr(res, x))
        ys = np.asarray(res.objective)
        if best is not None:
            ys = np.maximum(ys - best, 1e-12)
        ax.plot(xs, ys, marker="o", ms=3, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel({"seconds": "wall time [s]", "samples_seen": "codes inferred"}.get(x, x))
    ax.set_ylabel("objective $E_{1,\\eta}$" + (" minus best" if best is not None else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def penalties_and_prox(lam=1.0, t=0.5):
    """Left: the penalties |s|_0 and |s|_1 (scaled by lambda); right: their proximal maps,
    hard and soft thresholding, for a step t."""
    from ..sparse import hard_threshold, soft_threshold

    z = torch.linspace(-3, 3, 601, dtype=torch.float64)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(z, lam * (z != 0).double(), label="$\\lambda\\,|s|_0$", lw=2)
    a.plot(z, lam * z.abs(), label="$\\lambda\\,|s|$", lw=2)
    a.set_xlabel("$s$")
    a.set_title("penalty")
    a.legend()
    tau = math.sqrt(2 * t * lam)
    b.plot(z, hard_threshold(z, tau), label=f"hard threshold at $\\sqrt{{2t\\lambda}}={tau:.2f}$", lw=2)
    b.plot(z, soft_threshold(z, t * lam), label=f"soft threshold at $t\\lambda={t * lam:.2f}$", lw=2)
    b.plot(z, z, color="0.7", lw=1, ls="--", label="identity")
    b.set_xlabel("$z$")
    b.set_title("proximal map $\\arg\\min_s \\frac{1}{2}(s-z)^2 + t\\,\\mathrm{penalty}(s)$")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
