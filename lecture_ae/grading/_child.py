"""The trusted grader's child: a fresh Python process (no Jupyter, no IPython) that runs the
student's code in the grading sandbox and answers the grader's calls over a pipe.

Started by :class:`lecture_ae.grading.trusted.Child` as
``python -I -m lecture_ae.grading._child IN_FD OUT_FD`` inside bubblewrap, with only the public
part of ``lecture_ae`` on its file system (:data:`lecture_ae.grading.sandbox.CHILD_MODULES`).
Requests and answers are :mod:`~lecture_ae.grading._wire` frames (plain data):

``{"op": "exec", "code": ..., "name": ...}``
    run a cell (provided or the student's) in the notebook's namespace;
``{"op": "names"}``
    the names the notebook defines, and what they are (function, class, module, value);
``{"op": "call", "name": ..., "args": ..., "kwargs": ...}``
    call a function of the notebook; the answer holds its return value, its error (type,
    message, the student's traceback), which arguments it changed in place, the final state of
    every generator it got, and the reference functions it tried to call;
``{"op": "get", "name": ...}``
    a value the notebook defines (as plain data);
``{"op": "exit"}``.

Nothing in this process decides a score: the grader compares what comes back. While a call
runs, every ``lecture_ae`` function here is blocked (:class:`~lecture_ae.grading.guard.ReferenceGuard`),
and the rest of the package (the reference implementations, the checks) is not on the file
system: importing it gives a stand-in that records the attempt and raises
:class:`~lecture_ae.grading.guard.ReferenceUsedError` when used.
"""
from __future__ import annotations

import builtins
import contextlib
import io
import sys
import time
import traceback
import types
import warnings

from lecture_ae.grading import _wire
from lecture_ae.grading.guard import BlockingFinder, ReferenceGuard, ReferenceUsedError

#: Modules of lecture_ae that stay usable inside a call (this process's own machinery).
_ALLOWED = ("lecture_ae.grading._child", "lecture_ae.grading._wire", "lecture_ae.grading.guard",
            "lecture_ae.grading._launch", "lecture_ae.runtime", "lecture_ae._checks")
_OUTPUT_KEPT = 4000


# ---------------------------------------------------------------- the namespace
class _Shell:
    """What ``get_ipython()`` returns here: magics and shell commands do nothing."""

    def run_line_magic(self, *args, **kwargs):
        return None

    def run_cell_magic(self, *args, **kwargs):
        return None

    def system(self, *args, **kwargs):
        return None

    getoutput = system

    def __getattr__(self, attr):
        return lambda *args, **kwargs: None


_SHELL = _Shell()


def _namespace() -> dict:
    return {"__name__": "__main__", "__builtins__": builtins, "get_ipython": lambda: _SHELL,
            "display": lambda *args, **kwargs: None}


_PROVIDED = {"get_ipython", "display"}


def _kind(value) -> str:
    if isinstance(value, types.ModuleType):
        return "module:" + getattr(value, "__name__", "?")
    if isinstance(value, type):
        return "class"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return "function"
    if callable(value):
        return "callable"
    return "value"


# ------------------------------------------------------------------- the work
class _Sink(io.TextIOBase):
    """Keeps the first few thousand characters written to it, counts the rest."""

    def __init__(self, keep: int = _OUTPUT_KEPT):
        self.keep, self.parts, self.size = keep, [], 0

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        if self.size < self.keep:
            self.parts.append(text[: self.keep - self.size])
        self.size += len(text)
        return len(text)

    def text(self) -> str:
        out = "".join(self.parts)
        return out + (f"\n[... {self.size - self.keep} more characters]" if self.size > self.keep else "")


def _error(exc: BaseException, code_names=("<cell", "<student")) -> dict:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(code_names)]
    text = "".join(traceback.format_list(frames[-12:]) + traceback.format_exception_only(type(exc), exc)).rstrip()
    return {"type": type(exc).__name__, "builtin": type(exc).__module__ == "builtins", "message": str(exc)[:2000],
            "traceback": text[:6000], "not_implemented": isinstance(exc, NotImplementedError),
            "reference": isinstance(exc, ReferenceUsedError)}


def _exec(ns, request):
    sink = _Sink()
    try:
        code = compile(request["code"], f"<cell {request.get('name', '')}>", "exec")
    except (SyntaxError, ValueError) as exc:
        return {"ok": False, "error": _error(exc), "output": ""}
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, ns)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt of the student's code included
        return {"ok": False, "error": _error(exc), "output": sink.text()}
    return {"ok": True, "error": None, "output": sink.text()}


def _snapshot(value):
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value


def _same(a, b) -> bool:
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
                and bool(torch.equal(torch.nan_to_num(a.detach(), nan=1.2345e-30), torch.nan_to_num(b, nan=1.2345e-30))))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return True


def _call(ns, request):
    import torch

    fn = ns.get(request.get("name"))
    if not callable(fn):
        return {"error": {"type": "NameError", "builtin": True, "message": f"{request.get('name')} is not defined",
                          "traceback": "", "not_implemented": False, "reference": False}}
    args, kwargs = tuple(request.get("args") or ()), dict(request.get("kwargs") or {})
    before = [_snapshot(a) for a in args], {k: _snapshot(v) for k, v in kwargs.items()}
    sink = _Sink(0)
    value, error = None, None
    guard = ReferenceGuard(("lecture_ae",), _ALLOWED)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), guard:
                value = fn(*args, **kwargs)
        except BaseException as exc:
            error = _error(exc)
    seconds = time.perf_counter() - start
    calls = list(dict.fromkeys(guard.calls))
    mutated = [i for i, (a, b) in enumerate(zip(args, before[0])) if not _same(b, a)]
    mutated += [k for k, v in kwargs.items() if not _same(before[1][k], v)]
    generators = {str(i): a for i, a in enumerate(args) if isinstance(a, torch.Generator)}
    generators.update({k: v for k, v in kwargs.items() if isinstance(v, torch.Generator)})
    return {"value": value, "error": error, "mutated": mutated, "generators": generators, "reference_calls": calls,
            "seconds": seconds, "warnings": [f"{w.category.__name__}: {w.message}"[:300] for w in caught[:20]]}


def main(argv) -> int:
    rfd, wfd = int(argv[0]), int(argv[1])
    # what of lecture_ae is not on this file system imports as stand-ins (calling them scores zero)
    sys.meta_path.insert(0, BlockingFinder(("lecture_ae",), _ALLOWED, missing_only=True))
    ns = _namespace()
    _wire.write_frame(wfd, {"ready": True})
    while True:
        try:
            request = _wire.read_frame(rfd)
        except _wire.WireClosed:
            return 0
        op = request.get("op") if isinstance(request, dict) else None
        if op == "exec":
            answer = _exec(ns, request)
        elif op == "call":
            answer = _call(ns, request)
        elif op == "names":
            answer = {"names": {k: _kind(v) for k, v in list(ns.items())
                                if isinstance(k, str) and not k.startswith("__") and k not in _PROVIDED}}
        elif op == "get":
            answer = {"value": ns.get(request.get("name"))}
        elif op == "exit":
            return 0
        else:
            answer = {"error": {"type": "ProtocolError", "builtin": False, "message": f"unknown request {op!r}",
                                "traceback": "", "not_implemented": False, "reference": False}}
        try:
            _wire.write_frame(wfd, answer)
        except _wire.WireError:
            _wire.write_frame(wfd, {"error": {"type": "WireError", "builtin": False,
                                              "message": "the answer could not be sent", "traceback": "",
                                              "not_implemented": False, "reference": False}})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
