"""Course-scale autograding on Dask: every submission a task, one process writes the gradebook.

``python -m lecture_ae.grading autograde ASSIGNMENT`` (and ``make autograde``) runs
:func:`autograde`:

1. **Collect** ``grading/submitted/<student>/<assignment>/``: the notebooks and data files (as bytes:
   a worker needs ``lecture_ae`` installed, no shared file system) and each notebook's checksum.
2. **Sanitise** each notebook exactly as ``nbgrader autograde`` does (nbgrader's own preprocessors:
   outputs cleared, locked and test cells back from the gradebook), here, in the coordinator.
3. **Grade** each submission as one Dask task (:func:`grade_task`: the sandboxed kernel pass and
   the trusted grader, :func:`lecture_ae.grading.autograde.grade_submission`) on a ``LocalCluster``
   (one single-threaded worker process per core, ``workers=``) or on a cluster the instructor
   started (``scheduler="tcp://host:8786"``). A worker that dies makes its tasks run again
   elsewhere (``retries``); a task that keeps failing is recorded as a failure with its reason.
4. **Record** each result as it arrives, in this process only: nbgrader's own ``autograde`` for
   that student, whose Execute step (:class:`~lecture_ae.grading.autograde.TrustedExecute`) takes
   the task's result instead of running the notebook again. So the gradebook (SQLite or PostgreSQL,
   ``NBGRADER_DB_URL``), ``grading/autograded/`` and the instructors' records hold exactly what a
   serial ``nbgrader autograde`` writes. A signal (Ctrl-C, SIGTERM) waits for the student being
   recorded, then stops: the gradebook stays consistent, and the next run (``only_new``) finishes
   the rest.

The checksums of what was graded are kept in the instructors' records
(``grading/trusted/<student>/<assignment>/<notebook>.json``): ``only_new`` skips a submission
whose notebooks are unchanged since they were graded.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Submission", "Summary", "collect", "sanitize", "record_config", "grade_task", "autograde", "load_config"]

NOT_A_NOTEBOOK = "not a valid notebook"


# ------------------------------------------------------------------------- the course
def load_config(root):
    """The course's nbgrader configuration (``nbgrader_config.py`` in ``root``)."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


def _coursedir(root, config):
    from nbgrader.coursedir import CourseDirectory

    return CourseDirectory(config=config, root=str(root))


@dataclass
class Submission:
    student: str
    assignment: str
    notebooks: dict[str, bytes]  # name (without .ipynb) -> the submitted file
    files: dict[str, bytes]  # the data files next to them
    checksum: str
    missing: list[str] = field(default_factory=list)  # notebooks of the assignment not submitted


def _checksum(notebooks: dict[str, bytes], files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(notebooks):
        h.update(name.encode() + b"\0" + hashlib.sha256(notebooks[name]).digest())
    for name in sorted(files):
        h.update(b"file:" + name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def collect(root, assignment: str, coursedir, *, students=None, source_names=()) -> list[Submission]:
    """The submissions of ``assignment`` (all, or those of ``students``)."""
    from fnmatch import fnmatch

    base = Path(coursedir.format_path(coursedir.submitted_directory, ".", "."))
    out = []
    for folder in sorted(base.glob(f"*/{assignment}")):
        student = folder.parent.name
        if not folder.is_dir() or (students and student not in students):
            continue
        notebooks, files = {}, {}
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if not path.is_file() or path.is_symlink() or any(fnmatch(part, pat) for part in rel.parts
                                                              for pat in coursedir.ignore):
                continue
            if path.suffix == ".ipynb" and len(rel.parts) == 1:
                notebooks[path.stem] = path.read_bytes()
            else:
                files[rel.as_posix()] = path.read_bytes()
        out.append(Submission(student, assignment, notebooks, files, _checksum(notebooks, files),
                              [n for n in source_names if n not in notebooks]))
    return out


def sanitize(raw: bytes, student: str, assignment: str, notebook: str, config, db_url: str):
    """The notebook as nbgrader's autograde prepares it before running it (nbgrader's own preprocessors)."""
    import nbformat

    from .autograde import sanitize_steps

    nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    resources = {"nbgrader": {"student": student, "assignment": assignment, "notebook": notebook, "db_url": db_url},
                 "unique_key": notebook, "metadata": {"name": notebook, "path": "."}}
    for cls in sanitize_steps(config):
        nb, resources = cls(config=config)(nb, resources)  # (a step the course disabled does nothing, as in nbgrader)
    return nb


def record_config(config):
    """The configuration of the coordinator's nbgrader autograde: the course's, with its sanitising step
    :class:`~lecture_ae.grading.autograde.Presanitized` (the notebook sanitised for the task, not sanitised again:
    same steps, same file, same gradebook), which runs the course's steps where nothing is stored."""
    from .autograde import Presanitized, sanitize_steps

    out = copy.deepcopy(config)  # (Config.copy is shallow: it would change the course's sanitising steps too)
    out.Presanitized.steps = sanitize_steps(config)
    out.Autograde.sanitize_preprocessors = [Presanitized]
    return out


# ------------------------------------------------------------------------- the task
def grade_task(payload: dict) -> dict:
    """One submission, on a worker: the kernel pass and the trusted grader of each of its notebooks.

    ``payload``: ``assignment``, ``student``, ``notebooks`` ({name: (source JSON, sanitised JSON)}),
    ``files``, ``settings`` (``sandbox``, ``cell_timeout``, limit overrides). Returns plain data:
    ``{name: {"notebook", "report", "kernel_problems", "timings"}}`` and the worker's host name.
    Never raises for a student's notebook: what cannot be graded comes back as a failed report.
    """
    import socket

    import nbformat

    from .autograde import grade_submission
    from .sandbox import Limits, require
    from .trusted import failed_report

    settings = payload.get("settings", {})
    t0 = time.perf_counter()
    box = require(settings.get("sandbox", True))
    box.limits = Limits.from_env(**settings.get("limits", {}))
    out = {}
    for name, (source, sanitized) in payload["notebooks"].items():
        try:
            result = grade_submission(source, sanitized, files=payload.get("files"), sandbox=box,
                                      cell_timeout=settings.get("cell_timeout", 120),
                                      parallel=settings.get("parallel", False))
            out[name] = {"notebook": json.loads(nbformat.writes(result.notebook)), "report": result.report.to_json(),
                         "kernel_problems": {str(k): v for k, v in result.kernel_problems.items()},
                         "timings": result.seconds}
        except Exception as exc:  # pragma: no cover - grade_submission catches the student's failures
            report = failed_report(source, f"this notebook could not be graded: {type(exc).__name__}: {exc}")
            out[name] = {"notebook": None, "report": report.to_json(), "kernel_problems": {}, "timings": {}}
    return {"notebooks": out, "host": socket.gethostname(), "seconds": time.perf_counter() - t0}


def _report_from_json(data: dict):
    from .trusted import GradeReport, PartResult

    report = GradeReport(notes=list(data.get("notes", [])), log=list(data.get("log", [])),
                         cells=dict(data.get("cells", {})), seconds=float(data.get("seconds", 0.0)),
                         restarts=int(data.get("restarts", 0)))
    for gid, part in data.get("parts", {}).items():
        report.parts[gid] = PartResult(**part)
    return report


def _failed_notebook(sanitized, reason: str, source):
    """The sanitised notebook with every test cell failed for ``reason`` (a task that kept failing)."""
    from .autograde import compose
    from .trusted import failed_report

    return compose(sanitized, failed_report(source, reason), source)


# ---------------------------------------------------------------------- the summary
@dataclass
class Summary:
    assignment: str
    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unchanged since they were graded (only_new)
    failed: dict[str, str] = field(default_factory=dict)  # student -> reason
    parts: dict[str, list[float]] = field(default_factory=dict)  # part -> the scores
    seconds: dict[str, float] = field(default_factory=dict)  # student -> task seconds
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)  # student -> stage -> seconds
    interrupted: bool = False
    grades_csv: str = ""
    dashboard: str = ""
    wall: float = 0.0

    def table(self) -> str:
        lines = [f"{self.assignment}: {len(self.graded)} graded, {len(self.failed)} failed, {len(self.skipped)} "
                 f"unchanged (skipped) in {self.wall:.1f} s" + (" -- INTERRUPTED, run again to finish" if self.interrupted
                                                                 else "")]
        if self.parts:
            w = max(len(p) for p in self.parts)
            lines.append(f"  {'part':<{w}}  {'mean':>6}  {'min':>5}  {'max':>5}  n")
            for part, scores in sorted(self.parts.items()):
                lines.append(f"  {part:<{w}}  {statistics.fmean(scores):6.2f}  {min(scores):5g}  {max(scores):5g}  "
                             f"{len(scores)}")
        for student, reason in sorted(self.failed.items()):
            lines.append(f"  failed: {student}: {reason}")
        slow = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:5]
        if slow:
            lines.append("  slowest: " + ", ".join(f"{s} {t:.1f} s" for s, t in slow))
        if self.grades_csv:
            lines.append(f"  grades: {self.grades_csv}")
        return "\n".join(lines)


# ------------------------------------------------------------------------- the run
class _Deferred:
    """SIGINT/SIGTERM while a student is being recorded: finish that student, then stop."""

    def __init__(self):
        self.requested = False
        self.recording = False

    def __enter__(self):
        self._old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in self._old:
            signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        if not self.recording:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def _cluster(workers: int | None, scheduler: str | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="60s"), None
    n = workers or os.cpu_count() or 1
    try:
        import bokeh  # noqa: F401

        dashboard = "127.0.0.1:0"
    except ImportError:
        dashboard = None
    import dask

    # a task is a few subprocesses awaited by one thread: Dask's sampling profiler (every 10 ms) and
    # GIL monitor (every 1 ms) only take CPU from them (1.5% of a busy core, measured); the nannies
    # hand this configuration to their workers
    with dask.config.set(_WORKER_CONFIG):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=dashboard,
                               host="127.0.0.1", silence_logs=40)
    return Client(cluster), cluster


# (and every server's event-loop tick from 20 ms to 1 s, the system monitor from 0.5 to 2 s, the nanny's
# memory check from 0.1 to 1 s: an idle local cluster of two workers kept 0.034 cores busy, now 0.013-0.020)
_WORKER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.system-monitor.gil.enabled": False,
                  "distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "2s",
                  "distributed.worker.memory.monitor-interval": "1s"}


def _resources_of(sources: dict) -> dict | None:
    """What an assignment asks of a worker, from its source notebooks' metadata
    (``"lecture_ae": {"resources": {"GPU": 1}}``): its tasks then run only where that is."""
    for nb in sources.values():
        wanted = (nb.get("metadata", {}).get("lecture_ae") or {}).get("resources")
        if wanted:
            return {str(k): float(v) for k, v in wanted.items()}
    return None


def _record_path(coursedir, student, assignment, notebook) -> Path:
    return Path(coursedir.root) / "grading" / "trusted" / student / assignment / f"{notebook}.json"


def _graded_checksum(coursedir, sub: Submission) -> str | None:
    sums = set()
    for name in sub.notebooks or ["-"]:
        path = _record_path(coursedir, sub.student, sub.assignment, name)
        if not path.exists():
            return None
        with contextlib.suppress(ValueError):
            sums.add(json.loads(path.read_text()).get("checksum"))
    return sums.pop() if len(sums) == 1 else None


def autograde(root, assignment: str, *, students=None, workers: int | None = None, scheduler: str | None = None,
              only_new: bool = False, sandbox: bool = True, retries: int = 2, progress: bool | None = None,
              cell_timeout: float | None = None, export: bool = True, log=print) -> Summary:
    """Grade every submission of ``assignment`` in the course at ``root`` (see the module's doc)."""
    import nbformat
    from dask.distributed import as_completed
    from nbgrader.apps.api import NbGraderAPI
    from tqdm.auto import tqdm

    from .autograde import Presanitized, SubmissionResult, TrustedExecute, as_notebook

    root = Path(root).resolve()
    t_start = time.perf_counter()
    config = load_config(root)
    coursedir = _coursedir(root, config)
    db_url = coursedir.db_url
    source_dir = Path(coursedir.format_path(coursedir.source_directory, ".", assignment))
    sources = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(source_dir.glob("*.ipynb"))}
    if not sources:
        raise ValueError(f"assignment={assignment!r}: no source notebooks in {source_dir}")
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, course_id=coursedir.course_id) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise ValueError(f"assignment={assignment!r} is not in the gradebook: run `make release "
                             f"ASSIGNMENT={assignment}` (nbgrader generate_assignment) first") from None
    summary = Summary(assignment)
    subs = collect(root, assignment, coursedir, students=students, source_names=list(sources))
    if only_new:
        keep = [sub for sub in subs if _graded_checksum(coursedir, sub) != sub.checksum]
        summary.skipped = [sub.student for sub in subs if sub not in keep]
        subs = keep
    api = NbGraderAPI(coursedir=coursedir, config=record_config(config))
    timeout = cell_timeout if cell_timeout is not None else getattr(config.Execute, "timeout", 120) or 120
    # within a task the kernel pass and the trusted grader run one after the other: the workers
    # already keep the cores busy (one per core), and a busy machine would stretch the cells' wall time
    settings = {"sandbox": bool(sandbox), "cell_timeout": float(timeout), "parallel": False}

    def record(sub: Submission, results: dict | None, reason: str = "") -> None:
        """nbgrader's autograde of one student, with the task's results: the only writes of the run."""
        t0 = time.perf_counter()
        prepared = payloads.get(sub.student, (None, {}))[1].get("notebooks", {})
        for name, (_, sanitized) in prepared.items():
            Presanitized.presanitized[(sub.student, assignment, name)] = sanitized
        for name in sub.notebooks:
            res = (results or {}).get(name)
            if res is None or res.get("notebook") is None:
                continue
            TrustedExecute.precomputed[(sub.student, assignment, name)] = SubmissionResult(
                as_notebook(res["notebook"]), _report_from_json(res["report"]),
                {int(k) if str(k).lstrip("-").isdigit() else k: v for k, v in res.get("kernel_problems", {}).items()},
                res.get("timings", {}))
        try:
            outcome = api.autograde(assignment, sub.student, force=True, create=True)
        finally:
            for name in sub.notebooks:
                TrustedExecute.precomputed.pop((sub.student, assignment, name), None)
                Presanitized.presanitized.pop((sub.student, assignment, name), None)
        for name in sub.notebooks:  # the checksum of what is now in the gradebook
            path = _record_path(coursedir, sub.student, assignment, name)
            if path.exists():
                with contextlib.suppress(ValueError):
                    data = json.loads(path.read_text())
                    data["checksum"] = sub.checksum
                    path.write_text(json.dumps(data, indent=1, default=str))
        ok = outcome.get("success", False)
        if reason or not ok:
            why = reason or _last_error(outcome.get("log", "") + outcome.get("error", ""))
            summary.failed[sub.student] = why
        else:
            summary.graded.append(sub.student)
        with Gradebook(db_url, course_id=coursedir.course_id) as gb:
            with contextlib.suppress(MissingEntry):
                for nb in gb.find_submission(assignment, sub.student).notebooks:
                    for g in nb.grades:
                        if g.cell.cell_type == "code" and not g.needs_manual_grade and g.auto_score is not None \
                                and _is_test(sources.get(nb.name), g.name):
                            summary.parts.setdefault(g.name, []).append(float(g.score))
        summary.breakdown.setdefault(sub.student, {})["record"] = time.perf_counter() - t0

    def prepare(sub: Submission):
        """The task's payload (nbgrader's sanitised notebooks), or the reason it cannot be graded."""
        notebooks = {}
        try:
            for name, raw in sub.notebooks.items():
                if name not in sources:
                    continue
                sanitized = sanitize(raw, sub.student, assignment, name, config, db_url)
                notebooks[name] = (sources[name], json.loads(nbformat.writes(sanitized)))
        except Exception as exc:  # invalid JSON, not a notebook: nbgrader records and reports it
            return None, f"{NOT_A_NOTEBOOK}: {type(exc).__name__}: {str(exc)[:200]}"
        if not notebooks:
            return None, f"no notebook of {assignment} in the submission"
        return {"assignment": assignment, "student": sub.student, "notebooks": notebooks, "files": sub.files,
                "settings": settings}, ""

    from ..runtime import progress_enabled

    show = progress_enabled() if progress is None else progress
    bar = tqdm(total=len(subs), desc=f"autograde {assignment}", unit="submission", disable=not show,
               file=sys.stderr)
    payloads = {}
    with _Deferred() as stop:
        try:
            client = cluster = None
            try:
                wanted = _resources_of(sources)
                futures = {}
                for sub in subs:
                    payload, reason = prepare(sub)
                    if payload is None:  # recorded at once, with no cluster needed for it
                        stop.recording = True
                        record(sub, None, reason)
                        stop.recording = False
                        bar.update()
                        if stop.requested:
                            raise KeyboardInterrupt
                        continue
                    if client is None:
                        # the cluster at the first gradable submission, then each one sent as soon as it is
                        # sanitised: the workers grade the first ones while the coordinator prepares the rest
                        client, cluster = _cluster(workers, scheduler)
                        summary.dashboard = getattr(client, "dashboard_link", "") if cluster is not None else ""
                        if summary.dashboard and "None" not in summary.dashboard:
                            log(f"Dask dashboard: {summary.dashboard}")
                    payloads[sub.student] = (sub, payload)
                    key = f"grade-{assignment}-{sub.student}-{sub.checksum[:12]}-{time.time_ns()}"
                    fut = client.submit(grade_task, payload, key=key, retries=retries, resources=wanted, pure=False)
                    futures[fut] = sub
                for fut in (as_completed(list(futures)) if futures else ()):  # (as_completed([]) wants a client)
                    sub = futures[fut]
                    try:
                        result = fut.result()
                        reason = ""
                    except Exception as exc:  # failed on every try (e.g. its worker died each time)
                        result, reason = None, f"grading failed {retries + 1} times: {type(exc).__name__}: {exc}"
                    if result is None:
                        result = {"notebooks": {}}
                        for name, (source, sanitized) in payloads[sub.student][1]["notebooks"].items():
                            nb = _failed_notebook(sanitized, reason, source)
                            result["notebooks"][name] = {"notebook": json.loads(nbformat.writes(nb)),
                                                         "report": _failed_report_json(source, reason),
                                                         "kernel_problems": {}, "timings": {}}
                    summary.seconds[sub.student] = float(result.get("seconds", 0.0))
                    for name, res in result["notebooks"].items():
                        for stage, secs in (res.get("timings") or {}).items():
                            per = summary.breakdown.setdefault(sub.student, {})  # summed over notebooks
                            per[stage] = per.get(stage, 0.0) + float(secs)
                    stop.recording = True
                    record(sub, result["notebooks"], reason)
                    stop.recording = False
                    bar.update()
                    if stop.requested:
                        raise KeyboardInterrupt
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                if cluster is not None:
                    with contextlib.suppress(Exception):
                        cluster.close()
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
    if export and not summary.interrupted:
        summary.grades_csv = _export(root)
    summary.wall = time.perf_counter() - t_start
    return summary


def _failed_report_json(source, reason):
    from .trusted import failed_report

    return failed_report(source, reason).to_json()


def _is_test(source_nb, grade_id: str) -> bool:
    if source_nb is None:
        return False
    for cell in source_nb.get("cells", []):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if meta.get("grade_id") == grade_id:
            return bool(meta.get("grade")) and not meta.get("solution")
    return False


def _last_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if "ERROR" in ln or "Error" in ln]
    return (lines[-1] if lines else "nbgrader could not autograde this submission")[:300]


def _export(root: Path) -> str:
    import subprocess

    exe = Path(sys.executable).with_name("nbgrader")
    cmd = [str(exe), "export"] if exe.exists() else [sys.executable, "-m", "nbgrader", "export"]
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    config = load_config(root)
    target = getattr(config.CsvExportPlugin, "to", "") or "grades.csv"
    path = Path(target) if os.path.isabs(target) else root / target
    return str(path) if p.returncode == 0 and path.exists() else ""

