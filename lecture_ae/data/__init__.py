"""Datasets: generated from a seed or shipped inside a dependency, so nothing downloads.

The names below are loaded on first use (PEP 562): ``from lecture_ae.data import toy_2d``
imports :mod:`lecture_ae.data.toy` only, not scikit-learn and scikit-image, which the image
loaders need (about 2 s per process on a small machine: every grading sandbox pays it).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "images": ["image_patches", "load_image", "SKIMAGE_IMAGES"],
    "toy": ["TOY_LAMBDAS", "toy_2d"],
    "digits": ["ImageSplits", "load_digits_splits", "split_arrays"],
    "manifold": ["curve", "curve_tangent", "noisy_curve"],
    "mnist": ["MNIST_ENV", "chapter_digits", "load_mnist", "load_mnist_splits", "read_idx", "write_idx"],
    "mvtec": ["DEFECT_TYPES", "MVTEC_ENV", "TEXTURES", "MVTecSplits", "TextureSet", "add_defect", "load_mvtec",
              "make_texture_set", "mvtec_categories", "texture_dataset", "write_mvtec"],
    "cells": ["CellSplits", "cell_splits", "load_isbi_cells", "make_cells"],
    "crops": ["highpass", "image_crops"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'lecture_ae.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
