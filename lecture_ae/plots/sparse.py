"""Figures for the sparse-coding chapters (drawn for the book's column, see :mod:`.style`)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from .._checks import as_tensor
from ._args import known_keys, mapping
from .style import COLUMN_WIDTH

__all__ = [
    "atom_grid",
    "toy_sweep",
    "objective_curves",
    "atom_grids",
    "learning_curves",
    "convergence_curves",
    "objective_traces",
    "penalties_and_prox",
    "scaling_figure",
]

_ATOM_COLORS = ("#d62728", "#2ca02c", "#1f77b4", "#9467bd", "#ff7f0e")


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _named_series(series, name: str) -> dict:
    """``series`` (label -> 1-D sequence of numbers) checked: non-empty, finite numbers."""
    mapping(series, name, "label to a sequence of numbers")
    out = {}
    for label, values in series.items():
        v = np.asarray(_np(values), dtype=float).ravel()
        if v.size == 0:
            raise ValueError(f"{name}[{label!r}] is empty")
        if not np.isfinite(v).all():
            raise ValueError(f"{name}[{label!r}] contains NaN or inf")
        out[label] = v
    return out


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
    if ax is None:  # small atoms at least 0.45 in, large ones (crops) at two screen pixels per pixel
        side = min(COLUMN_WIDTH, max(0.45 * ncols + 1, 2 * ncols * (pw + pad) / 100))
        _, ax = plt.subplots(figsize=(side, side * (nrows + 1) / (ncols + 1)), layout="constrained")
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(canvas, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def atom_grids(dictionaries, patch_shape, *, orders=None, ncols=None):
    """Several dictionaries side by side (name -> W (d, h)), each drawn by :func:`atom_grid`.

    ``orders`` maps a name to the order of its atoms (default: as they are).
    """
    mapping(dictionaries, "dictionaries", "name to a dictionary W (d, h)")
    orders = known_keys(orders, dictionaries, "orders", "dictionaries")
    n = len(dictionaries)
    fig, axes = plt.subplots(1, n, figsize=(COLUMN_WIDTH, COLUMN_WIDTH / n + 0.5), squeeze=False,
                             layout="constrained")
    for ax, (name, W) in zip(axes[0], dictionaries.items()):
        atom_grid(W, patch_shape, ax=ax, title=name, order=orders.get(name), ncols=ncols)
    return fig


def toy_sweep(X, runs, *, lims=None, ncols: int = 3):
    """The lecture's sweep figure: one panel per lambda, in rows of ``ncols`` panels.

    ``runs`` maps lambda to a (W, S) pair learned on the 2-D data X (N, 2).  Each
    panel shows the data (grey), the reconstructions W s_i coloured by how many
    sources they use (0, 1, 2 or 3), and the three atoms as arrows with their lines
    (dashed).  The legend fills the first free panel (or goes below the grid).
    """
    X = _np(as_tensor(X, "X", ndim=2, shape="(N, 2)"))
    if X.shape[1] != 2:
        raise ValueError(f"X must have shape (N, 2); got {X.shape}")
    mapping(runs, "runs", "lambda to a (W, S) pair")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer; got {ncols!r}")
    lams = list(runs)
    ncols = min(ncols, len(lams))
    nrows = -(-len(lams) // ncols)
    side = COLUMN_WIDTH / ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(COLUMN_WIDTH, side * nrows + 0.1), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    lim = lims or 1.1 * np.abs(X).max()
    active_colors = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#d62728"]
    flat = axes.ravel()
    for ax, lam in zip(flat, lams):
        W, S = (_np(a) for a in runs[lam])
        if W.ndim != 2 or W.shape[0] != 2 or S.ndim != 2 or S.shape != (len(X), W.shape[1]):
            raise ValueError(f"runs[{lam}] must be (W (2, h), S (N, h)) for the N = {len(X)} points; "
                             f"got W {W.shape}, S {S.shape}")
        R = S @ W.T
        n_active = (np.abs(S) > 0).sum(axis=1)
        ax.scatter(X[:, 0], X[:, 1], s=6, c="0.82", label="data $x_i$", zorder=2)
        for k in range(4):
            sel = n_active == k
            ax.scatter(R[sel, 0], R[sel, 1], s=6, c=active_colors[k], label=f"$W s_i$, $\\|s_i\\|_0={k}$", zorder=3)
        for j in range(W.shape[1]):
            w = W[:, j]
            if np.linalg.norm(w) > 1e-12:
                u = w / np.linalg.norm(w) * 2 * lim
                ax.plot([-u[0], u[0]], [-u[1], u[1]], ls="--", lw=0.8, color=_ATOM_COLORS[j % 5], zorder=1)
            ax.annotate("", xy=w, xytext=(0, 0), zorder=5,
                        arrowprops=dict(arrowstyle="-|>", color="k", lw=2.0, mutation_scale=12))
        ax.set_title(f"$\\lambda = {lam:g}$")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.9", lw=0.8, zorder=0)
        ax.axvline(0, color="0.9", lw=0.8, zorder=0)
    handles, labels = flat[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="k", lw=2.0, marker=">", markersize=6))
    labels.append("atoms $w_j$")
    spare = flat[len(lams):]
    for ax in spare:
        ax.axis("off")
    if len(spare):
        spare[0].legend(handles, labels, loc="center", frameon=False, markerscale=2, handlelength=1.5)
    else:
        fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False, markerscale=2)
    return fig


def objective_curves(curves, *, x="seconds", ax=None, best=None, logy=True, title=None, legend=True):
    """Objective against wall time (or samples seen) for several runs.

    ``curves`` maps a label to a :class:`~lecture_ae.sparse.DictionaryLearningResult`
    (or anything with ``objective`` and ``seconds`` / ``samples_seen`` lists).  With
    ``best`` given the y axis is the gap to it, on a log scale.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.6), layout="constrained")
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
    if legend:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def learning_curves(runs, *, ylim=None):
    """The objective of dictionary-learning runs against wall time (left) and codes inferred (right).

    ``runs`` maps a label to a :class:`~lecture_ae.sparse.DictionaryLearningResult`; the
    legend goes below both panels.  ``ylim`` = (low, high) zooms both panels.
    """
    mapping(runs, "runs", "label to a dictionary-learning result")
    for label, res in runs.items():
        if not all(hasattr(res, a) for a in ("objective", "seconds", "samples_seen")):
            raise ValueError(f"runs[{label!r}] must have objective, seconds and samples_seen")
    fig, (a, b) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH, 3.3), sharey=True, layout="constrained")
    objective_curves(runs, x="seconds", ax=a, logy=False, legend=False)
    objective_curves(runs, x="samples_seen", ax=b, logy=False, legend=False)
    b.set_ylabel("")
    if ylim is not None:
        a.set_ylim(*ylim)
    fig.legend(*a.get_legend_handles_labels(), loc="outside lower center", ncols=1, frameon=False)
    return fig


def convergence_curves(gaps, *, ax=None, title=None, xlabel="iteration $k$", ylabel=None):
    """Gaps to the optimum (label -> values per iteration, all > 0) on a log scale."""
    gaps = _named_series(gaps, "gaps")
    if any((v <= 0).any() for v in gaps.values()):
        raise ValueError("gaps must be positive (clip them to a small number for a log scale)")
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.4), layout="constrained")
    for label, v in gaps.items():
        ax.semilogy(np.arange(1, len(v) + 1), v, label=label)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def objective_traces(traces, *, start: int = 0, ax=None, ylim=None, xlabel="iteration", ylabel="objective",
                     title=None, marker=None):
    """Objective values per iteration (label -> values, the first at iteration ``start``), linear axes."""
    traces = _named_series(traces, "traces")
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.2), layout="constrained")
    for label, v in traces.items():
        ax.plot(np.arange(start, start + len(v)), v, marker=marker, label=label)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(traces) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def penalties_and_prox(lam=1.0, t=0.5):
    """Left: the penalties |s|_0 and |s|_1 (scaled by lambda); right: their proximal maps,
    hard and soft thresholding, for a step t."""
    from ..sparse import hard_threshold, soft_threshold

    if not (np.isfinite(lam) and np.isfinite(t)) or lam < 0 or t <= 0:
        raise ValueError(f"lam must be >= 0 and t > 0; got lam={lam!r}, t={t!r}")
    z = torch.linspace(-3, 3, 601, dtype=torch.float64)
    fig, (a, b) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH, 3.4), layout="constrained")
    a.plot(z, lam * (z != 0).double(), label="$\\lambda\\,|s|_0$", lw=2)
    a.plot(z, lam * z.abs(), label="$\\lambda\\,|s|$", lw=2)
    a.set_xlabel("$s$")
    a.set_title("penalty")
    a.legend(loc="upper center")
    tau = math.sqrt(2 * t * lam)
    b.plot(z, hard_threshold(z, tau), label=f"hard, at $\\sqrt{{2t\\lambda}}={tau:.2f}$", lw=2)
    b.plot(z, soft_threshold(z, t * lam), label=f"soft, at $t\\lambda={t * lam:.2f}$", lw=2)
    b.plot(z, z, color="0.7", lw=1, ls="--", label="identity")
    b.set_xlabel("$z$")
    b.set_title("proximal map (thresholding)")
    b.legend(loc="upper left")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return fig


def scaling_figure(c, objectives, norms, *, c_star=None, title_right=None):
    """The scaling problem: objectives along the path (cW, S/c) (left), ||W||_F while learning (right).

    ``c`` (m,) the scales; ``objectives`` maps a label to the objective at each scale (the
    first is the one without eta, the second the one with eta); ``norms`` maps a label to
    ||W||_F after each iteration of a learning run.  The left panel's y axis shows the whole
    dip of the objectives that have a minimum: from 0 to three times the highest minimum.
    """
    c = np.asarray(_np(c), dtype=float).ravel()
    if c.size < 2 or not np.isfinite(c).all() or (c <= 0).any():
        raise ValueError("c must hold at least two positive scales")
    objectives = _named_series(objectives, "objectives")
    norms = _named_series(norms, "norms")
    for label, v in objectives.items():
        if v.shape != c.shape:
            raise ValueError(f"objectives[{label!r}] must hold one value per scale ({c.size}); got {v.size}")
    fig, (a, b) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH, 3.4), layout="constrained")
    for label, v in objectives.items():
        a.semilogx(c, v, label=label, lw=2)
    if c_star is not None:
        a.axvline(c_star, color="0.5", ls=":", label=f"$c^\\star = {c_star:.2f}$")
    # every curve with an interior minimum shows its whole dip and its rise
    minima = [v.min() for v in objectives.values() if 0 < int(np.argmin(v)) < len(v) - 1]
    top = 3 * max(minima) if minima else max(v.max() for v in objectives.values())
    a.set_ylim(0, top)
    a.set_xlabel("scale $c$ of $W$ (codes $S / c$)")
    a.set_ylabel("objective")
    a.legend(loc="center right")
    for label, v in norms.items():
        b.plot(np.arange(1, len(v) + 1), v, marker=".", label=label)
    b.set_xlabel("iteration")
    b.set_ylabel("$\\|W\\|_F$")
    if title_right:
        b.set_title(title_right)
    b.legend(loc="upper left")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return fig
