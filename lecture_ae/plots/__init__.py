"""Figures of the lecture, one module per topic (import the one you need).

:mod:`lecture_ae.plots.sparse` holds the sparse-coding figures,
:mod:`lecture_ae.plots.representation` those of *What makes a representation useful*; every chapter's
figures are drawn by a function here so that the notebooks stay short.  Every figure is
drawn for the book's text column (:mod:`lecture_ae.plots.style`): each chapter calls
:func:`use_book_style` first.
"""
from .style import COLUMN_WIDTH, DPI, MIN_FONT_PT, figure_problems, use_book_style

__all__ = ["COLUMN_WIDTH", "DPI", "MIN_FONT_PT", "figure_problems", "use_book_style"]
