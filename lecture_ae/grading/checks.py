"""The vocabulary of every autograder check: a check is a declaration.

A :class:`Check` names the function the students write and declares

* the **inputs**: ``cases(gen, **options)`` draws the cases of one seed from a
  :class:`torch.Generator` (the visible part uses the default seeds, the hidden part other
  seeds and options), and ``edge_cases()`` lists fixed cases (hidden part only);
* the **reference** with exactly the students' signature;
* the **comparison** ``compare(got, expected, ctx) -> None | str`` (:func:`tensor_close`,
  :func:`scalar_close`, :func:`tuple_close` or one written for the function);
* the **hints**: typical wrong implementations (:class:`Mistake`: when the student's result
  equals a mistake's, its description is the likely mistake) and rules on the result
  (``hint(got, expected, ctx) -> None | str``, e.g. "concatenated along the batch dimension").

The same declaration serves the visible self-check in JupyterLab (the student's kernel runs
``check_soft_threshold(soft_threshold)``), the trusted grader (which runs the instructor's test
cells, hidden parts included, in its own process, with the student's functions answering
from a sandboxed child process: :mod:`lecture_ae.grading.trusted`) and the tests. A new
assignment is a page of declarations (see ``lecture_ae/grading/ps1.py``).

:func:`check_function` does the work: it calls the student's function on every case,
compares each result with the reference and raises :class:`CheckFailed` (an
``AssertionError``: nbgrader gives the cell zero points) with a message written for the
student. The student's code never crashes the grading run and never hides what went wrong:

* exceptions (``NotImplementedError`` of the unmodified release included) become a message;
* every call runs under a time limit (default :data:`DEFAULT_TIME_LIMIT` seconds, environment
  variable ``LECTURE_AE_CHECK_TIME_LIMIT``), so an infinite loop costs seconds;
* inputs are snapshotted and compared afterwards: in-place changes are reported
  (a :class:`torch.Generator` argument is meant to advance and is exempt);
* results of the wrong type or shape, and NaN/inf, are reported as such;
* stdout/stderr and warnings of the student's code are captured: nbgrader gives zero points
  to a test cell that writes anything to stderr;
* the reference is blocked while the student's function runs
  (:class:`~lecture_ae.grading.guard.ReferenceGuard`): calling it scores zero.

**What a message shows.** A failure in the *visible* part shows the input, the expected and
the obtained result, where they differ and the likely mistake. A failure in the *hidden* part
(``part="hidden"``, the default with ``edge_cases=True``) shows which hidden check failed, the
kind of failure and the likely mistake, but no input, no value and no text of the student's own
exception (a student could otherwise print the hidden inputs into the message); the label of a
fixed edge case (public in this package) is shown, the labels of drawn cases (which name the
hidden seeds) are not. The complete message stays available to instructors as
``CheckFailed.full``.
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
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .guard import DEFAULT_ALLOWED, DEFAULT_GUARDED, ReferenceGuard

__all__ = [
    "CheckFailed",
    "CheckTimeout",
    "Case",
    "Check",
    "Context",
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
    """A check failed; the message is meant for the student (and ends up in the feedback).

    ``full`` is the complete message (inputs and values of a hidden check included), for
    instructors only.
    """

    def __init__(self, message: str, *, full: str | None = None):
        super().__init__(message)
        self.full = message if full is None else full


class CheckTimeout(BaseException):
    """The student's call ran past its time limit.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception``
    inside the student's loop cannot swallow it.
    """


@dataclass
class Case:
    """One input for the function under test.

    ``label`` says in words what the case probes ("n_iter = 0", "seed 3"); it is
    shown in the message (of a hidden check only when ``public``: the label of a fixed edge
    case, which this package publishes, and not that of a case drawn from a hidden seed).
    ``may_mutate`` names arguments (positions or keyword names) the function is allowed to
    change in place.
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    may_mutate: tuple = ()
    public: bool = False


@dataclass
class Mistake:
    """A known wrong implementation: same signature as the reference, and what it does wrong."""

    description: str
    fn: Callable[..., Any]


@dataclass
class Outcome:
    """What happened when the student's function was called.

    ``args`` and ``kwargs`` are the arguments the function received, as they are after the
    call (a generator has advanced by the draws the function made).
    """

    value: Any = None
    error: BaseException | None = None
    error_text: str = ""
    timed_out: bool = False
    reference_calls: list[str] = field(default_factory=list)
    mutated: list[str] = field(default_factory=list)
    seconds: float = 0.0
    printed: str = ""
    warnings: list[str] = field(default_factory=list)
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    mutated_in_child: list = field(default_factory=list)  # positions / keyword names a remote call changed


@dataclass
class Context:
    """What a comparison or a hint knows besides the two results.

    ``what`` is the function's name for the messages; ``case`` the input; ``against_reference``
    is False while the student's result is compared with a known mistake's; ``outcome`` is the
    student's call (its ``args`` after the call). ``call(*args, **kwargs)`` calls the student's
    function once more, with the same time limit and guard (e.g. to see whether a random
    function draws from the generator it is given).
    """

    what: str
    case: Case | None = None
    against_reference: bool = True
    outcome: Outcome | None = None
    caller: Callable[..., Outcome] | None = None

    def call(self, *args, **kwargs) -> Outcome:
        if self.caller is None:
            raise RuntimeError("this context cannot call the student's function")
        return self.caller(args, kwargs)


def _what(ctx) -> str:
    """The function's name from a context (or the name itself: comparators accept both)."""
    return ctx if isinstance(ctx, str) else ctx.what


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

    Elsewhere (Windows, a worker thread) the limit of the process that runs the student's code
    remains the backstop (the trusted grader's child, nbgrader's ``Execute.timeout``).
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
    """A private copy of an input: tensors, arrays and generators (same state) are copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.Generator):
        g = torch.Generator(device=value.device)
        g.set_state(value.get_state())
        return g
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
    return True  # other objects (a generator, which is meant to advance, included) are not snapshotted


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
    compared with a snapshot afterwards. A function of the trusted grader's sandboxed child
    (an object with a ``remote_call`` method, :class:`lecture_ae.grading.trusted.RemoteFunction`)
    is called through it: the child runs the student's code under its own guard and limits,
    and copies the arguments as they are after the call back into ``args``.
    """
    kwargs = dict(kwargs or {})
    names = list(names) if names is not None else [f"argument {i + 1}" for i in range(len(args))] + list(kwargs)
    before_args, before_kwargs = _clone(args), _clone(kwargs)
    remote = getattr(fn, "remote_call", None)
    if remote is not None:
        out = remote(args, kwargs, limit=limit)
    else:
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
    out.args, out.kwargs = args, kwargs
    for key in out.mutated_in_child:  # what a remote call changed in the child's copies
        name = names[key] if isinstance(key, int) and key < len(names) else str(key)
        if key not in may_mutate and name not in may_mutate and name not in out.mutated:
            out.mutated.append(name)
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
    if isinstance(value, torch.Generator):
        return "a torch.Generator"
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
    return lambda got, expected, ctx: compare_tensors(got, expected, rtol=rtol, atol=atol, what=_what(ctx))


def scalar_close(rtol: float = 1e-6, atol: float = 1e-9):
    """A comparator for :func:`check_function`: single numbers equal up to ``rtol``/``atol``."""
    return lambda got, expected, ctx: compare_scalars(got, expected, rtol=rtol, atol=atol, what=_what(ctx))


def tuple_close(*names: str, rtol: float = 1e-6, atol: float = 1e-9):
    """A comparator for functions that return a tuple, e.g. ``tuple_close("codes", "reconstruction")``.

    Tensors with at least one dimension are compared with :func:`compare_tensors`, numbers
    and 0-d tensors with :func:`compare_scalars`; the message names the element that differs.
    """

    def compare(got, expected, ctx):
        what = _what(ctx)
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
    hints: Sequence[Callable] = (),
    limit: float | None = None,
    guard_packages=DEFAULT_GUARDED,
    allow=DEFAULT_ALLOWED,
    part: str = "",
    quiet: bool = False,
) -> None:
    """Compare ``student_fn`` with ``reference_fn`` on every case; raise :class:`CheckFailed` at the first difference.

    Parameters
    ----------
    compare : ``compare(got, expected, ctx) -> None | str`` (default :func:`tensor_close`);
        ``ctx`` is a :class:`Context` (the built-in comparators also accept the function's name).
    mistakes : known wrong implementations; when the student's result matches one,
        its description is shown as the likely mistake.
    hints : rules ``hint(got, expected, ctx) -> None | str`` tried (in order) when the result
        differs from the reference and matches no mistake; the first answer is shown as the
        likely mistake. Hints and mistake descriptions are shown in hidden parts too, so they
        are written as fixed text, never with values of the input.
    limit : seconds per call (default ``LECTURE_AE_CHECK_TIME_LIMIT`` or :data:`DEFAULT_TIME_LIMIT`).
    guard_packages, allow : what :class:`ReferenceGuard` blocks during the student's call
        (``guard_packages=()`` switches the guard off).
    part : shown in the messages, e.g. ``"visible"`` or ``"hidden"``; a ``"hidden"`` part's
        messages show no inputs or values (the module's doc says what they show).

    Prints one line when every case passed and returns ``None``: an autograder cell must not
    end with a value, because nbgrader reads a number shown by the cell as partial credit.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame in the student's traceback
    name = name or getattr(reference_fn, "__name__", "function")
    compare = compare or tensor_close()
    limit = _default_time_limit() if limit is None else limit
    tag = f"{part} " if part else ""
    hidden = part == "hidden"
    if not callable(student_fn):
        raise CheckFailed(f"{name} is not a function (got {describe(student_fn)}); define it with `def {name}(...)`")
    n = len(cases)
    for i, case in enumerate(cases, 1):
        names = _arg_names(reference_fn, case.args, case.kwargs)
        with _quiet():  # a warning on stderr would cost the student the cell's points
            expected = reference_fn(*_clone(case.args), **_clone(case.kwargs))
        guard = ReferenceGuard(guard_packages, allow) if guard_packages else None

        def again(args, kwargs, _case=case, _names=names):
            return call_student(student_fn, args, kwargs, limit=limit, guard=ReferenceGuard(guard_packages, allow)
                                if guard_packages else None, may_mutate=_case.may_mutate, names=_names)

        # the student gets private copies: an in-place change is detected and cannot spoil later cases
        out = call_student(student_fn, _clone(case.args), _clone(case.kwargs), limit=limit, guard=guard,
                           may_mutate=case.may_mutate, names=names)
        failure = _failure(out, expected, case, names, name, limit, compare, mistakes, hints, again)
        if failure is not None:
            kind, body, likely = failure
            label = f" ({case.label})" if case.label else ""
            full = "\n".join([f"{name}: {tag}check {i} of {n}{label} failed."] + body
                             + ([f"  likely mistake: {likely}"] if likely else []))
            if not hidden:
                raise CheckFailed(full)
            shown = f" ({case.label})" if case.label and case.public else ""
            public = [f"{name}: {tag}check {i} of {n}{shown} failed.", f"  {kind}"]
            if likely:
                public.append(f"  likely mistake: {likely}")
            public.append("  (hidden checks show no inputs or values; the visible checks show them for their inputs)")
            raise CheckFailed("\n".join(public), full=full)
    if not quiet:
        print(f"{name}: all {n} {tag}checks passed")
    return None


def _failure(out: Outcome, expected, case: Case, names, name, limit, compare, mistakes, hints, again):
    """None when the call passed, else (kind in one line without values, full message lines, likely mistake)."""
    inputs = "  input:\n" + "\n".join(f"    {k} = {describe(v)}"
                                      for k, v in zip(names, list(case.args) + list(case.kwargs.values())))
    if out.reference_calls:
        kind = (f"{name} calls the reference implementation ({', '.join(out.reference_calls)}). "
                "This part scores zero: write the function yourself with torch operations.")
        return kind, ["  " + kind, inputs], ""
    if out.timed_out:
        kind = (f"{name} did not finish within the time limit of {limit:g} s: an infinite loop, "
                "or a loop that never reaches its end condition?")
        return kind, ["  " + kind, inputs], ""
    if out.error is not None:
        if isinstance(out.error, NotImplementedError):
            kind = f"{name} is not implemented yet (it raises NotImplementedError)."
            return kind, ["  " + kind, inputs], ""
        kind = f"{name} raised {type(out.error).__name__}."
        return kind, [f"  {name} raised {type(out.error).__name__}: {out.error}", inputs,
                      "  your code's traceback:\n" + _indent(out.error_text, 4)], ""
    if out.mutated:
        kind = (f"{name} changed its input {', '.join(out.mutated)} in place (e.g. `x -= ...`, `x[...] = ...` or "
                "an in-place method ending in `_`). Work on a copy (`x.clone()`) or use out-of-place operations.")
        return kind, ["  " + kind, inputs], ""
    ctx = Context(name, case=case, outcome=out, caller=again)
    problem = compare(out.value, expected, ctx)
    if problem is None:
        return None
    body = [inputs, "  expected: " + describe(expected), "  got:      " + describe(out.value),
            "  difference: " + problem.replace("\n", "\n    ")]
    likely = _likely_mistake(out.value, expected, case, mistakes, hints, compare, ctx)
    return "the result differs from the reference's.", body, likely


@contextlib.contextmanager
def _quiet():
    """Swallow stdout, stderr and warnings of the checking code itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _indent(text: str, k: int) -> str:
    pad = " " * k
    return "\n".join(pad + line for line in text.splitlines())


def _likely_mistake(got, expected, case: Case, mistakes: Sequence[Mistake], hints, compare, ctx: Context) -> str:
    wrong_ctx = Context(ctx.what, case=case, against_reference=False, outcome=ctx.outcome, caller=ctx.caller)
    for m in mistakes:
        try:
            with _quiet():
                wrong = m.fn(*_clone(case.args), **_clone(case.kwargs))
        except Exception:
            continue
        if wrong is None:
            continue
        if compare(got, wrong, wrong_ctx) is None:
            return m.description
    for hint in hints:
        try:
            with _quiet():
                text = hint(got, expected, ctx)
        except Exception:
            continue
        if text:
            return text
    return ""


# ----------------------------------------------------------------- declarations
@dataclass(eq=False)
class Check:
    """One graded function, declared once (see the module's doc).

    Parameters
    ----------
    name : the function's name in the notebook, e.g. ``"soft_threshold"``.
    reference : the reference, with exactly the students' signature.
    cases : ``cases(gen, **options) -> list[Case]``: the cases of one seed, drawn from the
        generator ``gen``; ``options`` are the keyword arguments of the check (shapes, lambdas
        ...) with the defaults in ``options``. The label of each case is prefixed by its seed.
    edge_cases : ``edge_cases() -> list[Case]``: fixed cases added by ``edge_cases=True`` (the
        hidden part); their labels are shown in hidden messages.
    compare, mistakes, hints : as in :func:`check_function`.
    options : the defaults of the options ``cases`` takes.
    doc : what the students' function computes (the check's docstring).
    guard_packages, guard_allow : what :class:`ReferenceGuard` blocks while the student's function runs.

    Calling the declaration checks a student's function::

        check(fn, *, seeds=(0,), edge_cases=False, limit=None, part=None, **options)

    ``part`` defaults to ``"hidden"`` with ``edge_cases=True``, else ``"visible"``. Like every
    autograder check it returns ``None`` and raises :class:`CheckFailed` at the first failure.
    """

    name: str
    reference: Callable
    cases: Callable[..., Sequence[Case]]
    edge_cases: Callable[[], Sequence[Case]] | None = None
    compare: Callable | None = None
    mistakes: Sequence[Mistake] = ()
    hints: Sequence[Callable] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""
    guard_packages: Sequence[str] = DEFAULT_GUARDED
    guard_allow: Sequence[str] = DEFAULT_ALLOWED

    def __post_init__(self):
        self.__doc__ = self.doc or f"Check the students' {self.name}."
        self.__name__ = f"check_{self.name}"
        self.__qualname__ = self.__name__

    def make_cases(self, seeds=(0,), edge_cases: bool = False, **options) -> list[Case]:
        """The cases for ``seeds`` (and the edge cases): what ``__call__`` checks."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise TypeError(f"check_{self.name}() got unknown option(s) {sorted(unknown)}; "
                            f"it takes seeds, edge_cases, limit, part and {sorted(self.options)}")
        opts = {**self.options, **options}
        cases = []
        for seed in seeds:
            for case in self.cases(torch.Generator().manual_seed(int(seed)), **opts):
                case.label = f"seed {seed}, {case.label}" if case.label else f"seed {seed}"
                case.public = False
                cases.append(case)
        if edge_cases and self.edge_cases is not None:
            for case in self.edge_cases():
                case.public = True
                cases.append(case)
        return cases

    def __call__(self, fn, *, seeds=(0,), edge_cases: bool = False, limit=None, part=None, **options) -> None:
        __tracebackhide__ = True
        check_function(fn, self.reference, self.make_cases(seeds, edge_cases, **options), name=self.name,
                       compare=self.compare, mistakes=self.mistakes, hints=self.hints, limit=limit,
                       guard_packages=tuple(self.guard_packages), allow=tuple(self.guard_allow), part=part or ("hidden" if edge_cases else "visible"))


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
