"""Figures of the chapter *What makes a representation useful* (drawn for the book's column).

Every function takes the numbers as a table (:class:`pandas.DataFrame`, one row per
representation) or a dict, draws one figure as wide as the column and returns it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ._args import mapping
from .style import COLUMN_WIDTH

__all__ = ["sensitivity_bars", "probe_accuracy", "margin_distributions", "readout_bars"]

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def _table(table, name: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError(f"{name} must be a non-empty pandas DataFrame (rows: representations, columns: conditions)")
    values = table.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must hold finite numbers only")
    return table


def _grouped_bars(table: pd.DataFrame, *, errors: pd.DataFrame | None, xlabel: str, reference: float | None,
                  title: str | None, xlim=None, legend_title=None):
    rows, cols = list(table.index), list(table.columns)
    height = 0.8 + 0.11 * len(rows) * max(len(cols), 2) + 0.35 * ((len(cols) + 2) // 3)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, height), layout="constrained")
    bar = 0.8 / len(cols)
    y = np.arange(len(rows))
    for k, col in enumerate(cols):
        xerr = None if errors is None else errors[col].to_numpy(dtype=float)
        ax.barh(y - 0.4 + bar * (k + 0.5), table[col].to_numpy(dtype=float), height=bar, xerr=xerr,
                color=_COLORS[k % len(_COLORS)], label=str(col), capsize=2 if xerr is not None else 0)
    if reference is not None:
        ax.axvline(reference, color="0.3", lw=1, ls="--")
    ax.set_yticks(y, [str(r) for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    if len(cols) > 1:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=min(3, len(cols)),
                   frameon=False, title=legend_title)
    return fig


def sensitivity_bars(table, *, title=None):
    """Sensitivity ratios rho_f / rho_x: one group of bars per representation (rows of ``table``), one bar per
    transform (columns); the dashed line at 1 is the input itself."""
    table = _table(table, "table")
    if (table.to_numpy(dtype=float) < 0).any():
        raise ValueError("table must hold sensitivity ratios >= 0")
    return _grouped_bars(table, errors=None, xlabel=r"sensitivity $\rho_f / \rho_x$ (1 = as much as the input)",
                         reference=1.0, title=title)


def probe_accuracy(accuracy, stderr=None, *, title=None):
    """Test accuracy of the linear probe per representation (rows), clean and under each transform (columns),
    with error bars of one standard error (``stderr``, same shape) when given."""
    accuracy = _table(accuracy, "accuracy")
    if stderr is not None:
        stderr = _table(stderr.fillna(0.0) if isinstance(stderr, pd.DataFrame) else stderr, "stderr")
        if stderr.shape != accuracy.shape or list(stderr.columns) != list(accuracy.columns):
            raise ValueError(f"stderr must have the shape and columns of accuracy {accuracy.shape}; got {stderr.shape}")
    lo = float(np.nanmin(accuracy.to_numpy(dtype=float)))
    return _grouped_bars(accuracy, errors=stderr, xlabel="test accuracy of the linear probe", reference=None,
                         title=title, xlim=(max(0.0, lo - 0.05), 1.0))


def margin_distributions(margins: dict, *, relative_to=None, title=None, xlabel="distance to the decision boundary "
                         r"$\Vert r \Vert$ (pixel units)"):
    """Box plots of the DeepFool margins: ``margins`` maps a representation to its distances (n,) (finite ones are
    drawn). ``relative_to`` names the entry whose median is drawn as a dashed line (e.g. ``"raw pixels"``)."""
    margins = mapping(margins, "margins", "representation to its distances (n,)")
    data = {}
    for name, d in margins.items():
        d = d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d, dtype=float)
        d = d[np.isfinite(d)]
        if d.ndim != 1 or d.size == 0:
            raise ValueError(f"margins[{name!r}] must be a 1-D array with at least one finite distance")
        data[name] = d
    if relative_to is not None and relative_to not in data:
        raise ValueError(f"relative_to must name an entry of margins; got {relative_to!r}")
    names = list(data)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 0.8 + 0.32 * len(names)), layout="constrained")
    ax.boxplot([data[n] for n in names], orientation="horizontal", widths=0.6, showfliers=False,
               medianprops={"color": "#d62728"})
    ax.set_yticks(np.arange(1, len(names) + 1), names)
    ax.invert_yaxis()
    if relative_to is not None:
        ax.axvline(float(np.median(data[relative_to])), color="0.3", lw=1, ls="--")
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def readout_bars(table, *, title=None):
    """What a linear read-out recovers from each feature map (rows of ``table``): one bar per target (columns,
    e.g. fine detail R^2, coarse R^2, class accuracy), all on a 0..1 scale."""
    table = _table(table, "table")
    return _grouped_bars(table, errors=None, xlabel=r"test $R^2$ of the read-out (accuracy for the class)",
                         reference=None, title=title, xlim=(0.0, 1.0))
