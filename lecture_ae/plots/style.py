"""The figures' sizes and fonts, chosen for the book's text column.

The book (sphinx-book-theme, a 1280 px wide window) shows a figure in a column of
:data:`COLUMN_PX` = 676 CSS px and never enlarges it; a wider image is scaled down, and its
text with it.  So every figure is drawn at :data:`DPI` = 100, :data:`COLUMN_WIDTH` inches wide
or less: the inline backend saves its tight bounding box plus 0.1 in on each side, at most
676 px, which the book shows at its own size, one image pixel per CSS pixel.  Its smallest text, :data:`MIN_FONT_PT` points, is then 10.5 * 100 / 72 = 14.6 px, at
least the body text's small size (0.9 x 16 px = 14.4 px).

:func:`use_book_style` sets matplotlib's defaults accordingly (every chapter calls it);
:func:`figure_problems` lists what in a drawn figure breaks these rules (the tests call it on
every figure function).
"""
from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.text import Text

__all__ = ["DPI", "COLUMN_PX", "COLUMN_WIDTH", "MIN_FONT_PT", "BOOK_RC", "use_book_style", "column_figure",
           "saved_width_px", "figure_problems"]

#: Resolution of the figures: one image pixel per CSS pixel of the book.
DPI = 100
#: Width of the book's text column (CSS px) in a 1280 px window: the widest image shown unscaled.
COLUMN_PX = 676
#: What the inline backend adds around the tight bounding box (``savefig.pad_inches``), per side.
PAD_INCHES = 0.1
#: Width of a column-wide figure (``figsize``) in inches: 650 px, 670 px once saved.
COLUMN_WIDTH = 6.5
#: The smallest font size of any text in a figure, in points.
MIN_FONT_PT = 10.5

#: matplotlib settings of the book's figures.
BOOK_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (COLUMN_WIDTH, 3.6),
    "font.size": 11.0,
    "axes.titlesize": 11.0,
    "axes.labelsize": 11.0,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 12.0,
    "figure.labelsize": 11.0,
    "savefig.pad_inches": PAD_INCHES,
}


def use_book_style() -> None:
    """Set matplotlib's defaults to the book's figure size, resolution and fonts."""
    mpl.rcParams.update(BOOK_RC)


def column_figure(height: float, *, width: float = COLUMN_WIDTH, **kwargs):
    """A new figure as wide as the column (``plt.figure`` with the book's size and resolution)."""
    kwargs.setdefault("dpi", DPI)
    return plt.figure(figsize=(width, height), **kwargs)


def _visible_texts(fig):
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip():
            # texts of invisible parents (an axis switched off, an empty legend) are not drawn
            axes = getattr(t, "axes", None)
            if axes is not None and not axes.get_visible():
                continue
            yield t


def saved_width_px(fig) -> float:
    """Width in pixels of the PNG that the inline backend saves (tight bounding box plus padding)."""
    fig.canvas.draw()
    bbox = fig.get_tightbbox(fig.canvas.get_renderer())
    return (bbox.width + 2 * PAD_INCHES) * fig.dpi


def figure_problems(fig, *, width_px: float = COLUMN_PX, min_font: float = MIN_FONT_PT) -> list[str]:
    """What keeps ``fig`` from reading well in the book's column (empty when nothing does).

    Every visible text must be at least ``min_font`` points, the figure drawn at :data:`DPI`,
    and the PNG that the inline backend saves at most ``width_px`` pixels wide.
    """
    problems = []
    fig.canvas.draw()  # creates the tick labels
    renderer = fig.canvas.get_renderer()
    for t in _visible_texts(fig):
        try:
            drawn = t.get_window_extent(renderer)
        except RuntimeError:  # pragma: no cover - a text that cannot be laid out
            continue
        if drawn.width == 0 or drawn.height == 0:
            continue
        size = t.get_fontsize()
        if size < min_font - 1e-6:
            problems.append(f"text {t.get_text()!r} is {size:g} pt (at least {min_font:g} pt)")
    saved = saved_width_px(fig)
    if saved > width_px:
        problems.append(f"the saved figure is {saved:.0f} px wide (the column holds {width_px:g} px)")
    if fig.dpi != DPI:
        problems.append(f"the figure has dpi {fig.dpi:g} (the book's figures have {DPI})")
    return problems
