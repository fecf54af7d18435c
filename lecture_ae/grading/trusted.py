"""The trusted grader: scores that no student code can change, hidden tests that it cannot read.

For one submitted notebook, :func:`grade_notebook`

1. walks the *source* notebook (``solutions/<assignment>/``, hidden tests included) cell by cell;
2. runs, in a sandboxed child process (:class:`Child`: a fresh ``python``, not a Jupyter kernel,
   in bubblewrap, :mod:`~lecture_ae.grading.sandbox`), the provided cells as they stand in the
   source and the student's answer cells (matched by their nbgrader ``grade_id``); the
   manually graded cells and everything after the last test cell are not needed and not run;
3. runs each autograder test cell of the source, hidden part included, **in this process**,
   where every name the notebook defines is bound to a :class:`RemoteFunction`: calling it sends
   the arguments to the child (plain data, :mod:`~lecture_ae.grading._wire`), the child calls
   the student's function and sends back its result. The checks (their inputs, the reference,
   the expected values, the comparison) never leave this process; the child sees the inputs
   of the calls it answers and nothing else.

A test cell that runs to its end scores its points, one that raises scores 0 (nbgrader's
rule). Whatever the child does (an exception, an infinite loop, ``os._exit``, killing itself,
forking, deadlocking, closing its pipe, printing for ever, allocating too much) costs at most
that part's points: the child is killed and started again, the cells it had run are run again
(without the one that failed), and the next part is graded.

The messages are those of the checks (:mod:`~lecture_ae.grading.checks`): a hidden part's
message shows no input, no value and no text of the student's own exception.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import io
import keyword
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _wire
from .checks import CheckFailed, CheckTimeout, Outcome, _default_time_limit
from .sandbox import Limits, Sandbox

__all__ = ["Child", "ChildFailure", "RemoteFunction", "PartResult", "GradeReport", "grade_notebook",
           "plan_notebook", "Step"]

_STARTUP_SECONDS = 120.0  # a child that cannot even import torch in this time is broken


class ChildFailure(RuntimeError):
    """The child did not answer: it timed out, ended, broke the protocol or could not start."""

    def __init__(self, reason: str, kind: str = "died"):
        super().__init__(reason)
        self.reason, self.kind = reason, kind  # kind: "timeout", "died", "protocol", "start"


def _cell_error_text(err: dict | None) -> str:
    if not err:
        return ""
    return err.get("traceback") or f"{err.get('type')}: {err.get('message')}"


# ------------------------------------------------------------------------ the child
class Child:
    """A sandboxed child process that runs the notebook's code, restarted when it fails.

    ``files``: the submission's data files (relative path -> bytes), put into its working folder.
    """

    def __init__(self, sandbox: Sandbox, *, files: dict[str, bytes] | None = None, log=None):
        self.sandbox = sandbox
        self.limits: Limits = sandbox.limits
        self.files = dict(files or {})
        self.log = log if log is not None else []
        self.proc: subprocess.Popen | None = None
        self.replay: list[tuple[str, str]] = []  # cells that ran (to run again after a restart)
        self.restarts = 0
        self.starts = 0
        self._root = tempfile.mkdtemp(prefix="lecture-ae-child-")
        self._output = bytearray()
        self._output_dropped = 0

    # ------------------------------------------------------------ process life
    def _start(self):
        self.stop()
        workdir = os.path.join(self._root, f"run{self.starts}")
        os.makedirs(workdir)
        for rel, data in self.files.items():
            dest = Path(workdir) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        self.sandbox.seed_matplotlib_cache(workdir)
        uid = self.sandbox.new_uid()
        self.sandbox.prepare(workdir, uid)
        req_r, req_w = os.pipe()
        ans_r, ans_w = os.pipe()
        out_r, out_w = os.pipe()
        env = self.sandbox.environment(workdir, MPLBACKEND="Agg")
        cmd = self.sandbox.command([sys.executable, "-I", "-m", "lecture_ae.grading._child", str(req_r), str(ans_w)],
                                   workdir=workdir, child_view=True, env=env, uid=uid)
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(req_r, ans_w), stdin=subprocess.DEVNULL, stdout=out_w,
                                         stderr=out_w, cwd=workdir, env=env if not self.sandbox.enabled else None,
                                         start_new_session=True)
        finally:
            for fd in (req_r, ans_w, out_w):
                os.close(fd)
        self.starts += 1
        self._req, self._ans = req_w, ans_r
        threading.Thread(target=self._drain, args=(out_r,), daemon=True).start()
        try:
            hello = _wire.read_frame(self._ans, time.monotonic() + _STARTUP_SECONDS)
        except _wire.WireError as exc:
            self.stop()
            raise ChildFailure(f"the grading process did not start ({exc}); its output: "
                               f"{self.output()[-2000:]}", "start") from None
        if not (isinstance(hello, dict) and hello.get("ready")):
            self.stop()
            raise ChildFailure("the grading process did not start (no greeting)", "start")

    def _drain(self, fd):
        cap = int(self.limits.output_kb) * 1024
        with os.fdopen(fd, "rb", buffering=0) as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    return
                room = cap - len(self._output)
                if room > 0:
                    self._output += chunk[:room]
                self._output_dropped += max(0, len(chunk) - max(room, 0))

    def output(self) -> str:
        """What the child printed outside the cells and calls (cut at ``Limits.output_kb``)."""
        text = self._output.decode("utf-8", "replace")
        return text + (f"\n[{self._output_dropped} more bytes cut]" if self._output_dropped else "")

    def stop(self):
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)
            with contextlib.suppress(Exception):
                self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=30)
            for fd in (self._req, self._ans):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.proc = None

    def close(self):
        if self.proc is not None:
            with contextlib.suppress(Exception):
                _wire.write_frame(self._req, {"op": "exit"})
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _ensure(self):
        """A running child that has run the cells of :attr:`replay` (started again if needed)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        restarting = self.starts > 0
        self._start()
        if restarting:
            self.restarts += 1
        for name, code in self.replay:
            try:
                self._ask({"op": "exec", "code": code, "name": name}, self.limits.cell_seconds)
            except ChildFailure as failure:  # it worked before: a cell that depends on timing or luck
                self.log.append(f"cell {name} failed when run again after a restart: {failure.reason}")
                self.replay = [(n, c) for n, c in self.replay if n != name]
                return self._ensure()

    def _ask(self, request: dict, seconds: float | None):
        try:
            _wire.write_frame(self._req, request)
            deadline = None if seconds is None else time.monotonic() + float(seconds)
            return _wire.read_frame(self._ans, deadline)
        except _wire.WireTimeout:
            self.stop()
            raise ChildFailure(f"no answer within {seconds:g} s", "timeout") from None
        except _wire.WireClosed:
            code = self.proc.wait(timeout=30) if self.proc is not None else None
            self.stop()
            raise ChildFailure(_ended(code), "died") from None
        except _wire.WireError as exc:
            self.stop()
            raise ChildFailure(f"it broke the protocol ({exc})", "protocol") from None
        except BaseException:  # e.g. the check's own alarm: the child's state is unknown now
            self.stop()
            raise

    # -------------------------------------------------------------- operations
    def exec_cell(self, name: str, code: str) -> dict:
        """Run a cell; ``{"ok", "error", "output", "failure"}`` (``failure``: the child had to be killed)."""
        self._ensure()
        try:
            answer = self._ask({"op": "exec", "code": code, "name": name}, self.limits.cell_seconds)
        except ChildFailure as failure:
            reason = failure.reason
            if failure.kind == "timeout":
                reason = (f"the cell did not finish within {self.limits.cell_seconds:g} s "
                          f"({self.limits.setting('cell_seconds')})")
            self.log.append(f"cell {name}: {reason}")
            return {"ok": False, "error": None, "output": "", "failure": reason}
        if not isinstance(answer, dict):
            self.stop()
            return {"ok": False, "error": None, "output": "", "failure": "it broke the protocol"}
        self.replay.append((name, code))
        answer.setdefault("failure", None)
        return answer

    def names(self) -> dict[str, str]:
        self._ensure()
        answer = self._ask({"op": "names"}, 60)
        names = answer.get("names") if isinstance(answer, dict) else None
        return {k: v for k, v in (names or {}).items() if isinstance(k, str) and isinstance(v, str)}

    def get(self, name: str):
        self._ensure()
        answer = self._ask({"op": "get", "name": name}, 60)
        return answer.get("value") if isinstance(answer, dict) else None

    def call(self, name: str, args: tuple, kwargs: dict, seconds: float) -> dict:
        self._ensure()  # a restart (and its replay) does not count against the call's time limit
        answer = self._ask({"op": "call", "name": name, "args": tuple(args), "kwargs": dict(kwargs)}, seconds)
        if not isinstance(answer, dict):
            self.stop()
            raise ChildFailure("it broke the protocol", "protocol")
        return answer


def _ended(code) -> str:
    if code is None:
        return "the process running your code ended"
    if code < 0:
        return f"the process running your code was killed (signal {-code})"
    return f"the process running your code ended (exit status {code}): os._exit, sys.exit in a thread, or a crash?"


# ---------------------------------------------------------------- remote functions
def _exception(err: dict) -> BaseException:
    name = str(err.get("type") or "Exception")
    message = str(err.get("message") or "")
    if err.get("not_implemented"):
        return NotImplementedError(message)
    cls = getattr(builtins, name, None)
    if not (err.get("builtin") and isinstance(cls, type) and issubclass(cls, BaseException)):
        safe = name if name.isidentifier() and not keyword.iskeyword(name) else "Error"
        cls = type(safe, (Exception,), {"__module__": "student"})
    try:
        return cls(message)
    except Exception:
        return Exception(message)


class StudentError(Exception):
    """A student's function raised (raised in the grader by a direct call of a :class:`RemoteFunction`)."""


class RemoteFunction:
    """Stands in, in the grader, for a function of the student's notebook that lives in the child.

    :func:`~lecture_ae.grading.checks.call_student` calls it through :meth:`remote_call`; a test cell
    may also call it directly, like the function itself.
    """

    def __init__(self, child: Child, name: str):
        self._child, self.__name__, self.__qualname__ = child, name, name

    def __repr__(self):
        return f"<function {self.__name__} of the student's notebook>"

    def remote_call(self, args, kwargs, *, limit=None) -> Outcome:
        import torch

        seconds = _default_time_limit() if limit is None else float(limit)
        out = Outcome()
        start = time.perf_counter()
        try:
            answer = self._child.call(self.__name__, args, kwargs, seconds)
        except ChildFailure as failure:
            out.seconds = time.perf_counter() - start
            if failure.kind == "timeout":
                out.timed_out, out.error = True, CheckTimeout(seconds)
            else:
                out.error = RuntimeError(failure.reason)
                out.error_text = failure.reason
            return out
        out.seconds = time.perf_counter() - start
        error = answer.get("error")
        if error:
            out.error = _exception(error)
            out.error_text = str(error.get("traceback") or "")
        else:
            out.value = answer.get("value")
        calls = answer.get("reference_calls") or []
        out.reference_calls = [str(c) for c in calls if isinstance(c, str)]
        out.warnings = [str(w) for w in answer.get("warnings") or [] if isinstance(w, str)]
        mutated = answer.get("mutated") or []
        out.mutated_in_child = [m for m in mutated if isinstance(m, (int, str))]
        for key, g in (answer.get("generators") or {}).items():  # the draws it made advance the grader's copy
            target = kwargs.get(key) if key in kwargs else (args[int(key)] if key.isdigit() and int(key) < len(args)
                                                             else None)
            if isinstance(target, torch.Generator) and isinstance(g, torch.Generator):
                target.set_state(g.get_state())
        return out

    def __call__(self, *args, **kwargs):
        out = self.remote_call(args, kwargs)
        if out.timed_out:
            raise CheckTimeout(out.error)
        if out.error is not None:
            raise StudentError(f"{self.__name__} raised {type(out.error).__name__}")
        return out.value


# ------------------------------------------------------------------------ the plan
@dataclass
class Step:
    kind: str  # "exec" (provided or answer cell, run in the child) or "test" (run here)
    grade_id: str
    code: str
    points: float = 0.0
    answer: bool = False  # the student's answer cell


def _nbgrader(cell) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def plan_notebook(source_nb, submitted_nb) -> tuple[list[Step], list[str]]:
    """The steps for a submission: source cells in order, the student's answers in their place.

    Returns (steps, notes): the notes say which answer cells are missing from the submission.
    """
    answers: dict[str, str] = {}
    for cell in (submitted_nb or {}).get("cells", []) if isinstance(submitted_nb, dict) else []:
        meta = _nbgrader(cell)
        gid = meta.get("grade_id")
        if cell.get("cell_type") == "code" and meta.get("solution") and isinstance(gid, str) and gid not in answers:
            answers[gid] = _source(cell)
    steps, notes = [], []
    for k, cell in enumerate(source_nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        meta = _nbgrader(cell)
        gid = str(meta.get("grade_id") or f"cell-{k}")
        if meta.get("grade") and not meta.get("solution"):
            steps.append(Step("test", gid, _source(cell), float(meta.get("points", 0) or 0)))
        elif meta.get("solution") and meta.get("grade"):
            continue  # graded by hand (a plot): nbgrader's pass runs it for the instructor to see
        elif meta.get("solution"):
            if gid not in answers:
                notes.append(f"the answer cell {gid} is missing from the submission")
            steps.append(Step("exec", gid, answers.get(gid, ""), answer=True))
        else:
            steps.append(Step("exec", gid, _source(cell)))
    last = max((i for i, s in enumerate(steps) if s.kind == "test"), default=-1)
    return steps[: last + 1], notes


def _python(code: str) -> str:
    """IPython syntax (magics, ``!cmd``) as plain Python (the child has no IPython)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with nbgrader
        return code
    try:
        return TransformerManager().transform_cell(code)
    except Exception:
        return code


def _imported_modules(steps) -> set[str]:
    names = set()
    for s in steps:
        if s.kind != "exec" or s.answer:
            continue
        try:
            tree = ast.parse(_python(s.code))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return names


# ------------------------------------------------------------------------- results
@dataclass
class PartResult:
    """The trusted verdict on one autograder test cell."""

    grade_id: str
    points: float
    max_points: float
    passed: bool
    message: str  # for the student: what the checks printed, or the failure (no hidden inputs)
    full: str = ""  # for instructors: the complete message
    seconds: float = 0.0


@dataclass
class GradeReport:
    """The trusted grader's verdict on one notebook."""

    parts: dict[str, PartResult] = field(default_factory=dict)
    cells: dict[str, dict] = field(default_factory=dict)  # exec results of the child (for instructors)
    notes: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    seconds: float = 0.0
    restarts: int = 0

    @property
    def points(self) -> float:
        return float(sum(p.points for p in self.parts.values()))

    @property
    def max_points(self) -> float:
        return float(sum(p.max_points for p in self.parts.values()))

    def to_json(self) -> dict:
        return {
            "parts": {k: vars(p) for k, p in self.parts.items()},
            "cells": self.cells,
            "notes": self.notes,
            "log": self.log,
            "seconds": self.seconds,
            "restarts": self.restarts,
        }


def failed_report(source_nb, reason: str) -> GradeReport:
    """Every autograded part at 0 with ``reason`` (an unreadable notebook, a child that never starts)."""
    report = GradeReport(notes=[reason])
    for step in plan_notebook(source_nb, None)[0]:
        if step.kind == "test":
            report.parts[step.grade_id] = PartResult(step.grade_id, 0.0, step.points, False, reason, reason)
    return report


# ------------------------------------------------------------------------- grading
def _namespace(child: Child, allowed_modules: set[str]) -> dict[str, Any]:
    import importlib

    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for name, kind in child.names().items():
        if not name.isidentifier() or name.startswith("__"):
            continue
        if kind.startswith("module:"):
            module = kind.split(":", 1)[1]
            if module in sys.modules:
                ns[name] = sys.modules[module]
            elif module in allowed_modules:
                with contextlib.suppress(Exception):
                    ns[name] = importlib.import_module(module)
        elif kind in ("function", "class", "callable"):
            ns[name] = RemoteFunction(child, name)
        else:
            with contextlib.suppress(ChildFailure, _wire.WireError):
                ns[name] = child.get(name)
    return ns


def _run_test(step: Step, ns: dict) -> PartResult:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(step.code, f"<test {step.grade_id}>", "exec"), ns)
    except CheckFailed as exc:
        printed = out.getvalue()
        return PartResult(step.grade_id, 0.0, step.points, False, (printed + str(exc)).strip(),
                          (printed + exc.full).strip(), time.perf_counter() - start)
    except Exception as exc:  # the check itself could not finish (e.g. a direct call raised)
        text = (f"{step.grade_id}: the check could not run to its end ({type(exc).__name__}); "
                "this part scores zero.")
        full = text + "\n" + "".join(traceback.format_exception(exc))[-4000:]
        return PartResult(step.grade_id, 0.0, step.points, False, text, full, time.perf_counter() - start)
    printed = out.getvalue().strip()
    return PartResult(step.grade_id, step.points, step.points, True, printed, printed, time.perf_counter() - start)


def grade_notebook(source_nb, submitted_nb, *, files: dict[str, bytes] | None = None,
                   sandbox: Sandbox | None = None) -> GradeReport:
    """Grade one submitted notebook against the source (both as JSON dicts or nbformat nodes).

    ``files``: the submission's data files (relative path -> bytes); ``sandbox``: how the
    child is started (default: bubblewrap with :meth:`Limits.from_env`; raises
    :class:`~lecture_ae.grading.sandbox.SandboxUnavailable` when bubblewrap is missing).
    """
    from .sandbox import require

    sandbox = sandbox if sandbox is not None else require(True)
    t0 = time.perf_counter()
    steps, notes = plan_notebook(source_nb, submitted_nb)
    report = GradeReport(notes=notes)
    allowed = _imported_modules(steps)
    with Child(sandbox, files=files, log=report.log) as child:
        ns = None
        for step in steps:
            if step.kind == "exec":
                result = child.exec_cell(step.grade_id, _python(step.code))
                ns = None
                report.cells[step.grade_id] = {
                    "ok": bool(result.get("ok")), "failure": result.get("failure"),
                    "error": _cell_error_text(result.get("error")), "output": str(result.get("output") or "")[:2000]}
                continue
            try:
                if ns is None:
                    ns = _namespace(child, allowed)
                part = _run_test(step, dict(ns))
            except ChildFailure as failure:
                text = f"{step.grade_id}: this part could not be graded: {failure.reason}"
                part = PartResult(step.grade_id, 0.0, step.points, False, text, text)
                ns = None
            report.parts[step.grade_id] = part
        report.restarts = child.restarts
        tail = child.output()
        if tail.strip():
            report.log.append("output of the grading process:\n" + tail[-4000:])
    report.seconds = time.perf_counter() - t0
    return report
