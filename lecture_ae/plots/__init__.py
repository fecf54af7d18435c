"""Figures of the lecture, one module per topic (import the one you need).

:mod:`lecture_ae.plots.sparse` holds the sparse-coding figures; every chapter's
figures are drawn by a function here so that the notebooks stay short.
"""
