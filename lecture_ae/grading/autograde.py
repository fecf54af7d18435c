"""nbgrader's autograding, made trustworthy: one submission = a sandboxed kernel pass + the trusted grader.

nbgrader stays the front end: ``nbgrader autograde`` (and ``make autograde``) collects the
submissions, sanitises them (locked and test cells come back from the gradebook), writes the
gradebook and the autograded notebooks; the formgrader and ``nbgrader generate_feedback`` work as
ever. The course's ``nbgrader_config.py`` replaces nbgrader's ``Execute`` step by
:class:`TrustedExecute`, which for each notebook calls :func:`grade_submission`:

1. **The kernel pass** (:func:`run_kernel_pass`): the notebook runs in a Jupyter kernel inside
   the sandbox (:mod:`~lecture_ae.grading.sandbox`: no course folder, no gradebook, no network,
   resource limits, the package read-only) in a fresh folder with the submission's data files,
   with the **hidden tests removed** from its test cells: the kernel never sees them. It makes
   the plots, the hand-graded cells' output and the visible output. Kernel and client talk over
   Unix sockets in a folder only this sandbox sees (ZeroMQ ``ipc``), so the kernel needs no
   network. A cell that runs too long or kills the kernel is marked; the kernel is started again,
   the cells before are run again, and the rest still runs.
2. **The trusted grader** (:func:`lecture_ae.grading.trusted.grade_notebook`): the source's test
   cells, hidden parts included, run in this process against the student's functions, which
   answer from a second sandboxed process. Both passes run at the same time.
3. **The composition**: the executed notebook, with each test cell's source cut to its visible
   part and its output replaced by the trusted verdict (the checks' messages; a hidden part's
   message shows no input). nbgrader's ``SaveAutoGrades`` then reads the scores from those
   outputs, as it always does, so the gradebook holds the trusted scores. Where the notebook's
   own run of a test cell disagrees with the trusted verdict, the output says
   "score set by the trusted grader".

The instructors' record of every submission (full messages, hidden failures with their inputs,
cell errors, restarts) goes to ``grading/trusted/<student>/<assignment>/<notebook>.json``,
outside what students get back.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from traitlets import Any, Bool, Float, List, Unicode

from . import _nbgrader_speed
from .sandbox import Limits, Sandbox, require
from .trusted import GradeReport, PartResult, failed_report, grade_notebook

_nbgrader_speed.install()

__all__ = ["public_notebook", "run_kernel_pass", "compose", "grade_submission", "SubmissionResult", "TrustedExecute",
           "Presanitized", "sanitize_steps", "TRUSTED_NOTE"]

TRUSTED_NOTE = "score set by the trusted grader"
_BEGIN, _END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def _meta(cell) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def is_test_cell(cell) -> bool:
    m = _meta(cell)
    return cell.get("cell_type") == "code" and bool(m.get("grade")) and not m.get("solution")


def strip_hidden(source: str) -> str:
    """The source without its ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions."""
    out, hidden = [], False
    for line in source.split("\n"):
        if _BEGIN in line:
            hidden = True
            continue
        if _END in line:
            hidden = False
            continue
        if not hidden:
            out.append(line)
    return "\n".join(out).rstrip("\n")


def as_notebook(nb):
    """A private nbformat (v4) copy of a notebook given as a node or as JSON data (cell sources as strings)."""
    return nbformat.reads(json.dumps(nb), as_version=4)


def public_notebook(nb):
    """A copy of ``nb`` whose test cells hold their visible part only (what students see)."""
    nb = as_notebook(nb)
    for cell in nb.cells:
        if is_test_cell(cell):
            cell.source = strip_hidden(cell.source)
    return nb


# ----------------------------------------------------------------------- kernel pass
def _kernel_classes():
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    class SandboxedKernelManager(AsyncKernelManager):
        """A kernel started inside the grading sandbox, reached over Unix sockets (``ipc``)."""

        sandbox = Any()
        workdir = Unicode()
        rundir = Unicode()
        uid = Any(None)

        async def start_kernel(self, **kw):
            # the kernel's own chatter ("To connect another client ...") stays out of the grader's log
            kw.setdefault("stdout", subprocess.DEVNULL)
            kw.setdefault("stderr", subprocess.DEVNULL)
            return await super().start_kernel(**kw)

        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if self.uid is not None and os.geteuid() == 0 and self.sandbox.enabled:
                os.chown(self.connection_file, self.uid, self.uid)
            env = self.sandbox.environment(self.workdir, JUPYTER_RUNTIME_DIR=self.rundir,
                                           IPYTHONDIR=os.path.join(self.workdir, ".ipython"))
            return self.sandbox.command(cmd, workdir=self.workdir, rw=[self.rundir], env=env, uid=self.uid)

    class CappedClient(NotebookClient):
        """nbclient, keeping at most ``cap`` bytes of output per cell (a student printing for ever is cut)."""

        cap = Any(2 * 1024 * 1024)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._sizes: dict[int, int] = {}
            self.truncated: set[int] = set()

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            size = len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values())
            used = self._sizes.get(cell_index, 0)
            if used + size > self.cap:
                if cell_index not in self.truncated:
                    self.truncated.add(cell_index)
                    outs.append(nbformat.v4.new_output("stream", name="stdout",
                                                       text=f"\n[output cut: more than {self.cap // 1024} kB]\n"))
                return None
            self._sizes[cell_index] = used + size
            return super().output(outs, msg, display_id, cell_index)

    return SandboxedKernelManager, CappedClient


def run_kernel_pass(nb, *, files: dict[str, bytes] | None = None, sandbox: Sandbox, cell_timeout: float = 120,
                    total_timeout: float = 1800, output_kb: int | None = None,
                    skip: dict[str, str] | None = None, timings: dict | None = None) -> tuple[object, dict[int, str]]:
    """Execute ``nb`` (a copy is changed) in a sandboxed kernel; (executed notebook, {cell index: problem}).

    A cell that does not finish within ``cell_timeout`` seconds or that kills the kernel gets an
    error output saying so; the kernel is started again, the earlier cells are run again (their
    new outputs discarded) and the following cells run. ``total_timeout`` bounds the whole pass.
    ``skip``: {grade id: why} of cells not to run (they hung or ended the trusted grader's process).
    ``timings``: gets ``"kernel start"``, the seconds until the kernel answered (every start summed).
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = copy.deepcopy(nb)
    KM, Client = _kernel_classes()
    problems: dict[int, str] = {}
    root = tempfile.mkdtemp(prefix="lecture-ae-kernel-")
    cap = int(output_kb or sandbox.limits.output_kb) * 1024 * 8  # images count too
    deadline = time.monotonic() + total_timeout
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    ok: list[int] = []

    def error_output(text):
        return nbformat.v4.new_output("error", ename="GradingError", evalue=text,
                                      traceback=[f"\x1b[0;31mGradingError\x1b[0m: {text}"])

    async def segment(start: int, attempt: int) -> int:
        workdir = os.path.join(root, f"home{attempt}")
        rundir = os.path.join(root, f"run{attempt}")
        os.makedirs(workdir)
        os.makedirs(rundir)
        for rel, data in (files or {}).items():
            dest = Path(workdir) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        sandbox.seed_matplotlib_cache(workdir)
        uid = sandbox.new_uid()
        sandbox.prepare(workdir, uid)
        sandbox.prepare(rundir, uid)
        km = KM(transport="ipc", connection_file=os.path.join(rundir, "kernel.json"), kernel_name="python3")
        km.ip = os.path.join(rundir, "k")
        km.sandbox, km.workdir, km.rundir, km.uid = sandbox, workdir, rundir, uid
        client = Client(nb, km=km, timeout=int(cell_timeout), allow_errors=True, interrupt_on_timeout=False,
                        raise_on_iopub_timeout=False, startup_timeout=120, record_timing=False,
                        extra_arguments=["--HistoryManager.hist_file=:memory:"],
                        resources={"metadata": {"path": workdir}})
        client.cap = cap
        position = start
        t_start = time.perf_counter()
        try:
            async with client.async_setup_kernel():
                if timings is not None:
                    timings["kernel start"] = timings.get("kernel start", 0.0) + time.perf_counter() - t_start
                sandbox.reclaim(rundir)  # its sockets exist now: no more files in the host's folder
                for i in ok:  # the cells that ran before the restart, for their effects (tests have none)
                    if is_test_cell(nb.cells[i]):
                        continue
                    scratch = copy.deepcopy(nb.cells[i])
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.async_execute_cell(scratch, i), cell_timeout + 5)
                while position < len(code_cells):
                    index = code_cells[position]
                    if time.monotonic() > deadline:
                        for j in code_cells[position:]:
                            problems[j] = "not run: the notebook ran past its total time limit"
                        return len(code_cells)
                    cell = nb.cells[index]
                    why = (skip or {}).get(_meta(cell).get("grade_id"))
                    if why:
                        problems[index] = why
                        cell.outputs = [error_output(why)]
                        position += 1
                        continue
                    try:
                        await client.async_execute_cell(cell, index)
                    except CellTimeoutError:
                        problems[index] = (f"this cell did not finish within {cell_timeout:g} s (NBGRADER_EXECUTE_TIMEOUT); "
                                           "it was stopped, and the notebook went on in a new kernel")
                        cell.outputs.append(error_output(problems[index]))
                        return position + 1
                    except DeadKernelError:
                        problems[index] = "the kernel died while this cell ran; the notebook went on in a new kernel"
                        cell.outputs.append(error_output(problems[index]))
                        return position + 1
                    ok.append(index)
                    position += 1
            return position
        finally:
            # nbclient shuts down only a kernel manager it made itself (km=None; its shutdown_kernel setting
            # does nothing here): this one is ours, and a kernel left running holds its sandbox (~200 MB)
            # until the grading process ends (a Dask worker grading 200 submissions filled the memory)
            with contextlib.suppress(Exception):
                await km.shutdown_kernel(now=True)
            # nor does it stop the channels of a client on such a manager: each pass would leave its
            # heartbeat thread and its zmq sockets behind (a Dask worker grading 40 submissions had 40
            # such threads, and its CPU per task doubled)
            kc = getattr(client, "kc", None)
            if kc is not None:
                with contextlib.suppress(Exception):
                    kc.stop_channels()
                client.kc = None

    async def main():
        position, attempt = 0, 0
        while position < len(code_cells):
            try:
                position = await segment(position, attempt)
            except Exception as exc:  # the kernel did not even start
                for j in code_cells[position:]:
                    problems[j] = f"not run: the kernel could not start ({type(exc).__name__}: {exc})"
                break
            attempt += 1

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return nb, problems


# ------------------------------------------------------------------------ composition
def _kernel_verdict(cell) -> bool:
    """True when the notebook's own run of a test cell passed (no error, nothing on stderr)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error" or (out.get("output_type") == "stream" and out.get("name") == "stderr"):
            return False
    return True


def _trusted_outputs(part: PartResult, kernel_passed: bool | None) -> list:
    outs = []
    note = ""
    if kernel_passed is not None and kernel_passed != part.passed:
        note = (f"[{TRUSTED_NOTE}: the notebook's own run of this cell {'passed' if kernel_passed else 'failed'}, "
                f"the trusted grader's run {'passed' if part.passed else 'failed'}]\n")
    if part.passed:
        outs.append(nbformat.v4.new_output("stream", name="stdout", text=note + part.message + "\n"))
    else:
        if note:
            outs.append(nbformat.v4.new_output("stream", name="stdout", text=note))
        outs.append(nbformat.v4.new_output("error", ename="CheckFailed", evalue=part.message,
                                           traceback=[f"\x1b[0;31mCheckFailed\x1b[0m: {part.message}"]))
    return outs


def compose(executed_nb, report: GradeReport, source_nb=None):
    """The autograded notebook: ``executed_nb`` (the kernel pass, visible tests only) with every test
    cell's output replaced by the trusted verdict; test cells of the source that the submission lost
    are put back (after the cell that precedes them in the source)."""
    nb = as_notebook(executed_nb)
    seen = set()
    for cell in nb.cells:
        if not is_test_cell(cell):
            continue
        gid = _meta(cell).get("grade_id")
        part = report.parts.get(gid)
        if part is None:
            continue
        seen.add(gid)
        cell.source = strip_hidden(cell.source)
        cell.outputs = _trusted_outputs(part, _kernel_verdict(cell))
        cell.execution_count = cell.get("execution_count")
    if source_nb is not None:
        order = [(_meta(c).get("grade_id"), c) for c in source_nb["cells"]]
        for k, (gid, src_cell) in enumerate(order):
            if gid in report.parts and gid not in seen and is_test_cell(src_cell):
                cell = as_notebook({"cells": [src_cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).cells[0]
                cell.source = strip_hidden(cell.source)
                cell.outputs = _trusted_outputs(report.parts[gid], None)
                cell.execution_count = None
                previous = [g for g, _ in order[:k] if g]
                where = len(nb.cells)
                for i, c in enumerate(nb.cells):
                    if _meta(c).get("grade_id") in previous:
                        where = i + 1
                nb.cells.insert(where, cell)
                seen.add(gid)
    return nb


# ------------------------------------------------------------------ one submission
@dataclass
class SubmissionResult:
    notebook: object  # the autograded notebook (nbformat node)
    report: GradeReport
    kernel_problems: dict[int, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def grade_submission(source_nb, submitted_nb, *, files: dict[str, bytes] | None = None,
                     sandbox: Sandbox | None = None, cell_timeout: float = 120, parallel: bool = True) -> SubmissionResult:
    """The kernel pass and the trusted grader on one notebook, composed (see the module's doc).

    ``submitted_nb`` is the notebook to run (for nbgrader: the sanitised submission, whose locked and
    test cells came back from the gradebook); ``source_nb`` the instructor's source notebook.
    ``parallel``: both passes at the same time (one submission on an idle machine); otherwise the
    trusted grader first, and the kernel pass leaves out the cells that hung or ended the trusted
    grader's process (they would only cost the same time again).
    """
    sandbox = sandbox if sandbox is not None else require(True)
    public = public_notebook(submitted_nb)
    seconds: dict[str, float] = {}
    kernel: dict = {}
    skip: dict[str, str] = {}

    def kernel_pass():
        t0 = time.perf_counter()
        try:
            kernel["nb"], kernel["problems"] = run_kernel_pass(public, files=files, sandbox=sandbox,
                                                               cell_timeout=cell_timeout, skip=skip, timings=seconds)
        except BaseException as exc:  # never lose the trusted scores because the outputs failed
            kernel["error"] = exc
        seconds["kernel"] = time.perf_counter() - t0  # the whole pass: its start(s), the cells, the shutdown

    t0 = time.perf_counter()
    if parallel:
        thread = threading.Thread(target=kernel_pass, daemon=True)
        thread.start()
    try:
        report = grade_notebook(source_nb, submitted_nb, files=files, sandbox=sandbox)
    except Exception as exc:
        report = failed_report(source_nb, f"the trusted grader could not grade this notebook: {type(exc).__name__}: {exc}")
    seconds["trusted"] = time.perf_counter() - t0
    if parallel:
        thread.join()
    else:
        skip.update({gid: f"not run: when the trusted grader ran this cell, {cell['failure']}"
                     for gid, cell in report.cells.items() if cell.get("failure")})
        kernel_pass()
    if "error" in kernel:
        executed, problems = public, {-1: f"the kernel pass failed: {kernel['error']!r}"}
        report.log.append(problems[-1])
    else:
        executed, problems = kernel["nb"], kernel["problems"]
    return SubmissionResult(compose(executed, report, source_nb), report, problems, seconds)


# ------------------------------------------------------------- nbgrader's Execute step
def _execute_base():
    from nbgrader.preprocessors import Execute

    return Execute


class TrustedExecute(_execute_base()):
    """nbgrader's ``Execute`` step, done by :func:`grade_submission` (set in ``nbgrader_config.py``)::

        c.Autograde.autograde_preprocessors = ["lecture_ae.grading.autograde.TrustedExecute", ...]

    It honours ``Execute.timeout`` (per cell, for the kernel pass) and adds ``sandbox`` (False:
    grade without bubblewrap, with a warning; the environment variable ``LECTURE_AE_NO_SANDBOX=1``
    does the same) and ``report_directory`` (the instructors' records, relative to the course root).
    """

    sandbox = Bool(True, help="Run the students' code in bubblewrap (False: without isolation)").tag(config=True)
    report_directory = Unicode("grading/trusted", help="Where the trusted grader's records go").tag(config=True)
    parallel = Bool(True, help="Run the kernel pass and the trusted grader at the same time").tag(config=True)
    total_timeout = Float(1800.0, help="Seconds the kernel pass of one notebook may take in all").tag(config=True)

    #: results computed elsewhere (a Dask worker): (student, assignment, notebook) -> SubmissionResult
    precomputed: dict = {}

    def preprocess(self, nb, resources):
        from nbgrader.coursedir import CourseDirectory

        info = resources["nbgrader"]
        student, assignment, notebook = info["student"], info["assignment"], info["notebook"]
        coursedir = CourseDirectory(config=self.config)
        key = (student, assignment, notebook)
        result = self.precomputed.pop(key, None)
        if result is None:
            source_path = Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / f"{notebook}.ipynb"
            source_nb = json.loads(source_path.read_text(encoding="utf-8"))
            folder = resources.get("metadata", {}).get("path") or "."
            files = collect_files(folder, exclude=(f"{notebook}.ipynb",))
            enabled = self.sandbox and os.environ.get("LECTURE_AE_NO_SANDBOX", "") not in ("1", "true", "yes")
            box = require(enabled)
            box.limits = Limits.from_env()
            result = grade_submission(source_nb, nb, files=files, sandbox=box, cell_timeout=self.timeout or 120,
                                      parallel=self.parallel)
        record = Path(coursedir.root) / self.report_directory / student / assignment / f"{notebook}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"student": student, "assignment": assignment, "notebook": notebook,
                                      "kernel_problems": {str(k): v for k, v in result.kernel_problems.items()},
                                      "timings": result.seconds, **result.report.to_json()}, indent=1, default=str))
        for gid, part in result.report.parts.items():
            self.log.info("trusted grader: %s %s %s: %g / %g", student, notebook, gid, part.points, part.max_points)
        return result.notebook, resources


def sanitize_steps(config=None) -> list:
    """The classes of nbgrader's sanitising step of ``autograde``: the course's
    ``c.Autograde.sanitize_preprocessors`` where it sets them, else nbgrader's own list."""
    from nbgrader.converters.autograde import Autograde
    from traitlets.utils.importstring import import_item

    if config is not None and "Autograde" in config and "sanitize_preprocessors" in config.Autograde:
        steps = config.Autograde.sanitize_preprocessors
    else:
        steps = Autograde.class_traits()["sanitize_preprocessors"].default()
    steps = [import_item(s) if isinstance(s, str) else s for s in steps]
    return [s for s in steps if s is not Presanitized]


def _presanitized_base():
    from nbgrader.preprocessors import NbGraderPreprocessor

    return NbGraderPreprocessor


class Presanitized(_presanitized_base()):
    """nbgrader's sanitising step (the first pass of ``autograde``), given the notebook it produces.

    The Dask coordinator sanitises each submission before it sends it to a worker (the worker
    grades the sanitised notebook); when it then records the student with nbgrader's own
    ``autograde``, this step, in place of :func:`sanitize_steps`, takes that notebook instead of
    sanitising the submission a second time (the same preprocessors on the same file and
    gradebook: the same notebook). A notebook with nothing stored goes through ``steps``: the
    course's :func:`sanitize_steps`, which the coordinator sets (its configuration for nbgrader
    names this step alone); unset, :func:`sanitize_steps` of this step's own configuration.
    """

    steps = List(help="The sanitising steps for a notebook with nothing stored").tag(config=True)

    #: (student, assignment, notebook) -> the sanitised notebook (nbformat node or JSON data)
    presanitized: dict = {}

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        done = self.presanitized.pop((info.get("student"), info.get("assignment"), info.get("notebook")), None)
        if done is not None:
            return as_notebook(done), resources
        for cls in self.steps or sanitize_steps(self.config):
            step = cls(parent=self.parent) if self.parent is not None else cls(config=self.config)
            nb, resources = step(nb, resources)  # (as nbgrader's exporter calls it: a disabled step does nothing)
        return nb, resources


def collect_files(folder, *, exclude=(), max_bytes: int = 200 * 1024 * 1024) -> dict[str, bytes]:
    """The data files of a submission folder (notebooks and checkpoints left out), at most ``max_bytes`` in all."""
    folder = Path(folder)
    out, total = {}, 0
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if not path.is_file() or path.is_symlink() or rel in exclude or path.suffix == ".ipynb" \
                or ".ipynb_checkpoints" in path.parts:
            continue
        size = path.stat().st_size
        if total + size > max_bytes:
            break
        out[rel] = path.read_bytes()
        total += size
    return out
