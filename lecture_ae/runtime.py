"""Device choice, seeding, progress bars and the full-size switch.

Everything in :mod:`lecture_ae` runs on the CPU by default here and on CUDA when a
GPU is present.  Chapters run at a small size that builds on a 2-core laptop in
seconds; ``LECTURE_AE_FULL=1`` runs them at full size (meant for a GPU).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["get_device", "seed_everything", "make_generator", "full_size", "progress", "progress_enabled"]

_TRUE = {"1", "true", "yes", "on"}


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return a :class:`torch.device`.

    ``None`` or ``"auto"`` picks CUDA when a GPU is present and the CPU otherwise.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'auto' or None; got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but no CUDA GPU is available; use device='cpu'")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so every number is repeatable."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    torch.manual_seed(int(seed))


def make_generator(seed: int | torch.Generator | None, device: str | torch.device | None = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` from an integer seed (a generator is passed through)."""
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator(device=get_device(device) if device is not None else "cpu")
    if seed is None:
        gen.seed()
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        gen.manual_seed(int(seed))
    else:
        raise ValueError(f"seed must be a non-negative integer, a torch.Generator or None; got {seed!r}")
    return gen


def full_size() -> bool:
    """True when ``LECTURE_AE_FULL`` is set: chapters run at full size (GPU advised)."""
    return os.environ.get("LECTURE_AE_FULL", "0").strip().lower() in _TRUE


def progress_enabled() -> bool:
    """Progress bars are on unless ``LECTURE_AE_PROGRESS=0`` (the book build sets it)."""
    return os.environ.get("LECTURE_AE_PROGRESS", "1").strip().lower() not in {"0", "false", "no", "off"}


def progress(iterable=None, *, show: bool | None = None, **kwargs):
    """A tqdm progress bar (a widget in JupyterLab, text in a terminal).

    ``show=None`` follows :func:`progress_enabled`; ``show=False`` hides it.
    """
    disable = not (progress_enabled() if show is None else show)
    return tqdm(iterable, disable=disable, **kwargs)
