"""The generic checking framework behind every autograder cell.

:func:`check_function` calls a student's function on a list of :class:`Case`
inputs, compares each result with the reference implementation and raises
:class:`CheckFailed` (an ``AssertionError``, so nbgrader gives the cell zero
points) with a message written for the student: the input, what was expected,
what came back, where they differ and, when the result matches a known wrong
implementation (a :class:`Mistake`), the likely mistake.

The student's code never crashes the grading run and never hides what went wrong:

* exceptions (``NotImplementedError`` of the unmodified release included) become a message;
* every call runs under a time limit (``SIGALRM``; default :data:`DEFAULT_TIME_LIMIT`
  seconds, environment variable ``LECTURE_AE_CHECK_TIME_LIMIT``), so an infinite loop
  costs seconds, not the whole notebook;
* inputs are snapshotted and compared afterwards: in-place changes are reported;
* results of the wrong type or shape, and NaN/inf, are reported as such;
* stdout/stderr and warnings of the student's code are captured: nbgrader gives
  zero points to a test cell that writes anything to stderr;
* the reference is blocked while the student's function runs
  (:class:`~lecture_ae.grading.guard.ReferenceGuard`): calling it scores zero.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import signal
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .guard import DEFAULT_ALLOWED, DEFAULT_GUARDED, ReferenceGuard, ReferenceUsedError

__all__ = [
    "CheckFailed",
    "CheckTimeout",
    "Case",
    "Mistake",
    "Outcome",
    "DEFAULT_TIME_LIMIT",
    "time_limit",
    "call_student",
    "describe",
    "compare_tensors",
    "compare_scalars",
    "tensor_close",
    "scalar_close",
    "tuple_close",
    "check_function",
]

DEFAULT_TIME_LIMIT = 10.0


class CheckFailed(AssertionError):
    """A check failed; the message is meant for the student (and ends up in the feedback)."""


class CheckTimeout(BaseException):
    """The student's call ran past its time limit.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception``
    inside the student's loop cannot swallow it.
    """


@dataclass
class Case:
    """One input for the function under test.

    ``label`` says in words what the case probes ("n_iter = 0", "seed 3"); it is
    shown in the message.  ``may_mutate`` names arguments (positions or keyword
    names) the function is allowed to change in place.
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    may_mutate: tuple = ()


@dataclass
class Mistake:
    """A known wrong implementation: same signature as the reference, and what it does wrong."""

    description: str
    fn: Callable[..., Any]


@dataclass
class Outcome:
    """What happened when the student's function was called."""

    value: Any = None
    error: BaseException | None = None
    error_text: str = ""
    timed_out: bool = False
    reference_calls: list[str] = field(default_factory=list)
    mutated: list[str] = field(default_factory=list)
    seconds: float = 0.0
    printed: str = ""
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------ time limit
def _default_time_limit() -> float:
    value = os.environ.get("LECTURE_AE_CHECK_TIME_LIMIT", "")
    try:
        return float(value) if value.strip() else DEFAULT_TIME_LIMIT
    except ValueError:
        return DEFAULT_TIME_LIMIT


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`CheckTimeout` in the body after ``seconds`` (Unix main thread; else no limit).

    Elsewhere (Windows, a worker thread) nbgrader's own ``Execute.timeout`` remains the backstop.
    """
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise CheckTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:  # even when the alarm fires right here, the previous handler comes back
            signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------ snapshots
def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(torch.nan_to_num(a.detach(), nan=1.2345e-30), torch.nan_to_num(b, nan=1.2345e-30)))
        )
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return True  # other objects are not snapshotted


def _arg_names(fn, args, kwargs) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    names = [params[i] if i < len(params) else f"argument {i + 1}" for i in range(len(args))]
    return names + list(kwargs)


# ---------------------------------------------------------------------- calling
def call_student(fn, args=(), kwargs=None, *, limit: float | None = None, guard: ReferenceGuard | None = None,
                 may_mutate=(), names: Sequence[str] | None = None) -> Outcome:
    """Call ``fn(*args, **kwargs)`` safely and report what happened (never raises, except on KeyboardInterrupt).

    The arguments themselves are passed (so that in-place changes are visible) and
    compared with a snapshot afterwards.
    """
    kwargs = dict(kwargs or {})
    names = list(names) if names is not None else [f"argument {i + 1}" for i in range(len(args))] + list(kwargs)
    before_args, before_kwargs = _clone(args), _clone(kwargs)
    out = Outcome()
    buf = io.StringIO()
    guard_cm = guard if guard is not None else contextlib.nullcontext()
    start = _now()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), guard_cm:
                with time_limit(limit):
                    out.value = fn(*args, **kwargs)
        except CheckTimeout as exc:
            out.timed_out, out.error = True, exc
        except (Exception, SystemExit) as exc:
            out.error = exc
            out.error_text = _student_traceback(exc)
    out.seconds = _now() - start
    out.printed = buf.getvalue()
    out.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    if guard is not None:
        out.reference_calls = list(dict.fromkeys(guard.calls))
    for i, (a, b) in enumerate(zip(args, before_args)):
        if i not in may_mutate and (names[i] if i < len(names) else None) not in may_mutate and not _same(b, a):
            out.mutated.append(names[i] if i < len(names) else f"argument {i + 1}")
    for k, v in kwargs.items():
        if k not in may_mutate and not _same(before_kwargs[k], v):
            out.mutated.append(k)
    return out


def _now() -> float:
    import time

    return time.perf_counter()


def _student_traceback(exc: BaseException, limit_lines: int = 12) -> str:
    """The traceback of ``exc`` without the frames of this module (the student's lines only)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith(os.path.join("grading", "checks.py"))]
    lines = traceback.format_list(frames)[-limit_lines:]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


# ------------------------------------------------------------------- describing
def describe(value, *, max_entries: int = 12) -> str:
    """A short human description of a value: type, shape, dtype and (small) contents."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        head = f"tensor of shape {tuple(t.shape)}, {str(t.dtype).replace('torch.', '')}"
        if t.numel() == 0:
            return head + " (empty)"
        if t.numel() <= max_entries:
            return head + f": {_fmt_values(t)}"
        if t.is_floating_point() and bool(torch.isfinite(t).all()):
            nz = int((t != 0).sum())
            return head + f" (min {float(t.min()):.4g}, max {float(t.max()):.4g}, {nz} of {t.numel()} entries non-zero)"
        return head
    if isinstance(value, np.ndarray):
        return "numpy " + describe(torch.from_numpy(np.ascontiguousarray(value)), max_entries=max_entries)
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "None"
    if isinstance(value, (int, bool, str)):
        return repr(value)
    if isinstance(value, (list, tuple)) and len(value) <= 6:
        inner = ", ".join(describe(v, max_entries=4) for v in value)
        return f"{type(value).__name__} [{inner}]"
    return f"{type(value).__name__} object"


def _fmt_values(t: torch.Tensor) -> str:
    with np.printoptions(precision=4, suppress=True, linewidth=100):
        return np.array2string(t.cpu().numpy(), separator=", ").replace("\n", " ")


def _fmt_index(idx) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


# ------------------------------------------------------------------- comparing
def _as_tensor_result(got, what: str):
    """(tensor, None) or (None, problem) for a result that should be a tensor."""
    if isinstance(got, torch.Tensor):
        return got.detach(), None
    if isinstance(got, np.ndarray) and got.dtype.kind in "fiub":
        return torch.from_numpy(np.ascontiguousarray(got)), None
    if got is None:
        return None, f"{what} returned None: is the `return` statement missing?"
    if isinstance(got, tuple):
        return None, f"{what} returned a tuple of {len(got)} values; it should return one tensor"
    return None, f"{what} returned a {type(got).__name__}; it should return a torch.Tensor"


def compare_tensors(got, expected, *, rtol: float = 1e-6, atol: float = 1e-9, what: str = "the function") -> str | None:
    """None when ``got`` matches ``expected`` (a tensor), else a description of the difference."""
    g, problem = _as_tensor_result(got, what)
    if problem:
        return problem
    e = expected.detach()
    if tuple(g.shape) != tuple(e.shape):
        msg = f"shape {tuple(g.shape)} instead of {tuple(e.shape)}"
        if g.dim() == 2 and tuple(g.shape) == tuple(e.shape)[::-1]:
            msg += " (the transpose?)"
        elif g.numel() == e.numel():
            msg += " (same number of entries: a reshape or a squeeze/unsqueeze too many?)"
        elif g.dim() == e.dim() - 1 or g.numel() == 1:
            msg += " (a sum or mean over one axis too many?)"
        return msg
    if g.is_complex() or not (g.is_floating_point() or g.dtype in (torch.int64, torch.int32, torch.bool)):
        return f"dtype {g.dtype}; expected real numbers ({e.dtype})"
    g = g.to(torch.float64).cpu()
    e64 = e.to(torch.float64).cpu()
    bad_g = ~torch.isfinite(g)
    if bool((bad_g & torch.isfinite(e64)).any()):
        where = bad_g.nonzero()[0].tolist()
        kind = "NaN" if bool(torch.isnan(g).any()) else "inf"
        return (f"{kind} in {int(bad_g.sum())} of {g.numel()} entries (first at {_fmt_index(where)}); "
                "a division by zero, log(0) or 0 * inf?")
    if torch.allclose(g, e64, rtol=rtol, atol=atol, equal_nan=True):
        return None
    diff = (g - e64).abs()
    tol = atol + rtol * e64.abs()
    wrong = diff > tol
    flat = int(torch.argmax(torch.where(wrong, diff, torch.zeros_like(diff))))
    idx = np.unravel_index(flat, tuple(g.shape)) if g.dim() else ()
    lines = [
        f"{int(wrong.sum())} of {g.numel()} entries differ; largest difference at {_fmt_index(idx)}: "
        f"expected {float(e64.reshape(-1)[flat]):.6g}, got {float(g.reshape(-1)[flat]):.6g} "
        f"(tolerance: rtol={rtol:g}, atol={atol:g})"
    ]
    hint = _pattern_hint(g, e64, rtol, atol)
    if hint:
        lines.append(hint)
    if e.dtype == torch.float64 and got.dtype in (torch.float32, torch.float16, torch.bfloat16, np.float32):
        lines.append(f"note: your result is {str(got.dtype).replace('torch.', '')} while the inputs are float64: "
                     "keep the dtype of the inputs (e.g. torch.zeros(..., dtype=X.dtype))")
    return "\n".join(lines)


def _pattern_hint(g: torch.Tensor, e: torch.Tensor, rtol: float, atol: float) -> str:
    """Generic patterns: a constant factor, a sign flip, all zeros, a constant offset."""
    if bool((g == 0).all()) and not bool((e == 0).all()):
        return "pattern: every entry of your result is 0"
    mask = e.abs() > 1e-12
    if bool(mask.any()):
        ratio = g[mask] / e[mask]
        r = float(ratio.median())
        if r != 0 and torch.allclose(g, r * e, rtol=max(rtol, 1e-6), atol=atol):
            if abs(r + 1) < 1e-6:
                return "pattern: your result is the expected one with the opposite sign"
            return f"pattern: your result is the expected one times {r:.4g}"
    off = float((g - e).mean())
    if torch.allclose(g, e + off, rtol=max(rtol, 1e-6), atol=atol):
        return f"pattern: your result is the expected one plus {off:.4g}"
    return ""


def _as_scalar_result(got, what: str):
    if isinstance(got, bool):
        return None, f"{what} returned a bool; it should return a number"
    if isinstance(got, (int, float, np.floating, np.integer)):
        return float(got), None
    if isinstance(got, (torch.Tensor, np.ndarray)):
        if got.size == 1 if isinstance(got, np.ndarray) else got.numel() == 1:
            return float(got.reshape(-1)[0]), None
        return None, (f"{what} returned an array of shape {tuple(got.shape)}; it should return a single number "
                      "(a 0-d tensor or a float): is a sum or a mean missing?")
    if got is None:
        return None, f"{what} returned None: is the `return` statement missing?"
    return None, f"{what} returned a {type(got).__name__}; it should return a number"


def compare_scalars(got, expected, *, rtol: float = 1e-6, atol: float = 1e-9, what: str = "the function") -> str | None:
    """None when the number ``got`` matches ``expected``, else a description of the difference."""
    g, problem = _as_scalar_result(got, what)
    if problem:
        return problem
    e = float(expected)
    if not math.isfinite(g) and math.isfinite(e):
        return f"got {g}; a division by zero, log(0) or 0 * inf?"
    if math.isclose(g, e, rel_tol=rtol, abs_tol=atol):
        return None
    msg = f"expected {e:.8g}, got {g:.8g} (tolerance: rtol={rtol:g}, atol={atol:g})"
    if e != 0 and g != 0:
        msg += f"; ratio got/expected = {g / e:.4g}"
    return msg


def tensor_close(rtol: float = 1e-6, atol: float = 1e-9):
    """A comparator for :func:`check_function`: tensors equal up to ``rtol``/``atol``."""
    return lambda got, expected, what: compare_tensors(got, expected, rtol=rtol, atol=atol, what=what)


def scalar_close(rtol: float = 1e-6, atol: float = 1e-9):
    """A comparator for :func:`check_function`: single numbers equal up to ``rtol``/``atol``."""
    return lambda got, expected, what: compare_scalars(got, expected, rtol=rtol, atol=atol, what=what)


def tuple_close(*names: str, rtol: float = 1e-6, atol: float = 1e-9):
    """A comparator for functions that return a tuple, e.g. ``tuple_close("codes", "reconstruction")``.

    Tensors with at least one dimension are compared with :func:`compare_tensors`, numbers
    and 0-d tensors with :func:`compare_scalars`; the message names the element that differs.
    """

    def compare(got, expected, what):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return (f"{what} returned {describe(got)}; it should return a tuple of {len(expected)} values "
                    f"({', '.join(names)})")
        for k, (g, e) in enumerate(zip(got, expected)):
            label = names[k] if k < len(names) else f"value {k + 1}"
            if isinstance(e, torch.Tensor) and e.dim() > 0:
                problem = compare_tensors(g, e, rtol=rtol, atol=atol, what=f"{what} ({label})")
            else:
                problem = compare_scalars(g, e, rtol=rtol, atol=atol, what=f"{what} ({label})")
            if problem is not None:
                return f"{label} (element {k + 1} of the tuple): {problem}"
        return None

    return compare


# -------------------------------------------------------------------- the check
def check_function(
    student_fn,
    reference_fn,
    cases: Sequence[Case],
    *,
    name: str | None = None,
    compare=None,
    mistakes: Sequence[Mistake] = (),
    limit: float | None = None,
    guard_packages=DEFAULT_GUARDED,
    allow=DEFAULT_ALLOWED,
    part: str = "",
    quiet: bool = False,
) -> None:
    """Compare ``student_fn`` with ``reference_fn`` on every case; raise :class:`CheckFailed` at the first difference.

    Parameters
    ----------
    compare : ``compare(got, expected, what) -> None | str`` (default :func:`tensor_close`).
    mistakes : known wrong implementations; when the student's result matches one,
        its description is shown as the likely mistake.
    limit : seconds per call (default ``LECTURE_AE_CHECK_TIME_LIMIT`` or :data:`DEFAULT_TIME_LIMIT`).
    guard_packages, allow : what :class:`ReferenceGuard` blocks during the student's call
        (``guard_packages=()`` switches the guard off).
    part : shown in the messages, e.g. ``"visible"`` or ``"hidden"``.

    Prints one line when every case passed and returns ``None``: an autograder cell must not
    end with a value, because nbgrader reads a number shown by the cell as partial credit.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame in the student's traceback
    name = name or getattr(reference_fn, "__name__", "function")
    compare = compare or tensor_close()
    limit = _default_time_limit() if limit is None else limit
    tag = f"{part} " if part else ""
    if not callable(student_fn):
        raise CheckFailed(f"{name} is not a function (got {describe(student_fn)}); define it with `def {name}(...)`")
    n = len(cases)
    for i, case in enumerate(cases, 1):
        header = f"{name}: {tag}check {i} of {n}" + (f" ({case.label})" if case.label else "") + " failed."
        names = _arg_names(reference_fn, case.args, case.kwargs)
        inputs = "\n".join(f"    {k} = {describe(v)}" for k, v in zip(names, list(case.args) + list(case.kwargs.values())))
        with _quiet():  # a warning on stderr would cost the student the cell's points
            expected = reference_fn(*_clone(case.args), **_clone(case.kwargs))
        guard = ReferenceGuard(guard_packages, allow) if guard_packages else None
        # the student gets private copies: an in-place change is detected and cannot spoil later cases
        out = call_student(student_fn, _clone(case.args), _clone(case.kwargs), limit=limit, guard=guard,
                           may_mutate=case.may_mutate, names=names)
        body: list[str] = []
        if out.reference_calls:
            body.append(
                f"{name} calls the reference implementation ({', '.join(out.reference_calls)}). "
                "This part scores zero: write the function yourself with torch operations."
            )
        elif out.timed_out:
            body.append(f"{name} did not finish within the time limit of {limit:g} s: an infinite loop, "
                        "or a loop that never reaches its end condition?")
        elif out.error is not None:
            if isinstance(out.error, NotImplementedError):
                body.append(f"{name} is not implemented yet (it raises NotImplementedError).")
            else:
                body.append(f"{name} raised {type(out.error).__name__}: {out.error}")
                body.append("  your code's traceback:\n" + _indent(out.error_text, 4))
        elif out.mutated:
            body.append(
                f"{name} changed its input {', '.join(out.mutated)} in place (e.g. `x -= ...`, `x[...] = ...` or "
                "an in-place method ending in `_`). Work on a copy (`x.clone()`) or use out-of-place operations."
            )
        else:
            problem = compare(out.value, expected, name)
            if problem is not None:
                body.append("  input:\n" + inputs)
                body.append("  expected: " + describe(expected))
                body.append("  got:      " + describe(out.value))
                body.append("  difference: " + problem.replace("\n", "\n    "))
                likely = _likely_mistake(out.value, case, mistakes, compare, name)
                if likely:
                    body.append("  likely mistake: " + likely)
        if body:
            if not any(b.startswith("  input:") for b in body):
                body.insert(1 if len(body) > 0 else 0, "  input:\n" + inputs)
            raise CheckFailed("\n".join([header] + [b if b.startswith("  ") else "  " + b for b in body]))
    if not quiet:
        print(f"{name}: all {n} {tag}checks passed")
    return None


@contextlib.contextmanager
def _quiet():
    """Swallow stdout, stderr and warnings of the checking code itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _indent(text: str, k: int) -> str:
    pad = " " * k
    return "\n".join(pad + line for line in text.splitlines())


def _likely_mistake(got, case: Case, mistakes: Sequence[Mistake], compare, name) -> str:
    for m in mistakes:
        try:
            with _quiet():
                wrong = m.fn(*_clone(case.args), **_clone(case.kwargs))
        except Exception:
            continue
        if wrong is None:
            continue
        if compare(got, wrong, name) is None:
            return m.description
    return ""


# ------------------------------------------------------------- IPython display
def _show_check_failed(shell, etype, value, tb, tb_offset=None):
    """Show a failed check as its message only: the frames of the checking code help no student."""
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, stb)  # an error output: nbgrader gives the cell zero points
    return stb


def _install_ipython_handler() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "set_custom_exc"):
        shell.set_custom_exc((CheckFailed,), _show_check_failed)


_install_ipython_handler()
