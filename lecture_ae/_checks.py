"""Argument checks shared by every public function: clear errors that name the argument."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .runtime import get_device


def as_tensor(
    value,
    name: str,
    *,
    ndim: int | None = None,
    shape: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Convert ``value`` (tensor, ndarray, nested list) to a floating tensor and check it.

    ``shape`` is the human description used in errors, e.g. ``"(N, d)"``.
    Integer input becomes float32; float64 stays float64.
    """
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, (np.ndarray, list, tuple, numbers.Number)):
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a numeric array{_shape_hint(shape)}; got {type(value).__name__}") from exc
    else:
        raise ValueError(f"{name} must be a torch.Tensor or numpy array{_shape_hint(shape)}; got {type(value).__name__}")
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise ValueError(f"{name} must hold real numbers; got dtype {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of shape {shape or '?'}; got shape {tuple(t.shape)}")
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if device is not None:
        t = t.to(get_device(device))
    # NaN and infinities show in the smallest or largest entry (aminmax propagates NaN): no (N, d) mask
    if finite and t.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(t))).all()):
        bad = "NaN" if bool(torch.isnan(t).any()) else "inf"
        raise ValueError(f"{name} contains {bad}; every entry must be finite")
    return t


_INT_DTYPES = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


def _shape_hint(shape: str | None) -> str:
    return f" of shape {shape}" if shape else ""


def check_scalar(value, name: str, *, low: float | None = 0.0, low_inclusive: bool = True, high: float | None = None) -> float:
    """A finite real number in [low, high] (or (low, high] when ``low_inclusive`` is False)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if low is not None and (value < low or (not low_inclusive and value == low)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}; got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}; got {value}")
    return value


def check_int(value, name: str, *, low: int = 1) -> int:
    """An integer >= low."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value}")
    return int(value)


def check_same_rows(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} must have the same number of rows N; got {a.shape[0]} and {b.shape[0]}")
