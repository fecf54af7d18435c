"""Course-scale grading (lecture_ae/grading/coordinator.py): Dask tasks, one writer, nothing lost.

One ps1 course of four submissions (the solution, a wrong soft threshold, a wrong ISTA, a file
that is not a notebook) is graded

* by plain ``nbgrader autograde`` (one after the other) and by ``python -m lecture_ae.grading
  autograde`` on a local Dask cluster: the gradebooks hold the same rows and scores;
* into a PostgreSQL gradebook (a real server, started for the test), by two coordinators at once
  (one per half of the class), then again (idempotent: the same rows, nothing twice), then with
  ``--only-new`` (nothing to do) and after a resubmission (only that student);
* on a cluster started the way an instructor does (``dask scheduler`` and ``dask worker``), with
  one worker process killed while it grades: every student still gets their scores;
* on a worker without bubblewrap: every task fails, and each student gets a recorded failure
  with the reason, not a missing row;
* by a coordinator interrupted with SIGINT: the gradebook stays consistent and ``--only-new``
  finishes the rest.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lecture_ae.grading.pipeline import _env, chain, fill_from_source, grade_submissions, replace_solution
from nbgrader_harness import CHECK_LIMIT, EXECUTE_TIMEOUT
from pg_server import postgres_server

A = "ps1_sparse_coding"
SOLUTION = fill_from_source(A)
STUDENTS = {
    "solution": SOLUTION,
    "wrong_shrink": chain(SOLUTION, replace_solution(
        "soft_threshold", "def soft_threshold(x, lam):\n    return x * (x.abs() > lam)")),
    "wrong_ista": chain(SOLUTION, replace_solution(
        "ista", "def ista(X, W, lam, n_iter=100, S0=None):\n    return torch.zeros(X.shape[0], W.shape[1])")),
    "not_a_notebook": None,
}
EXTRA = {"not_a_notebook": {f"{A}.ipynb": "{ this is not JSON"}}
# nbgrader's Gradebook runs `alembic` from PATH when it meets a new database
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
ENV = {"LECTURE_AE_CELL_TIME_LIMIT": str(EXECUTE_TIMEOUT), "LECTURE_AE_PROGRESS": "0"}


def _grade(root, engine="dask", env=None, **kw):
    return grade_submissions(A, STUDENTS, root=root, timeout=EXECUTE_TIMEOUT, check_time_limit=CHECK_LIMIT,
                             extra_files=EXTRA, env={**ENV, **(env or {})}, engine=engine, feedback=False, **kw)


def _cli(root, *args, env=None, **kw) -> subprocess.CompletedProcess:
    environ = _env({**ENV, "NBGRADER_EXECUTE_TIMEOUT": str(EXECUTE_TIMEOUT),
                    "LECTURE_AE_CHECK_TIME_LIMIT": str(CHECK_LIMIT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "lecture_ae.grading", "autograde", A, *args], cwd=root,
                          env=environ, text=True, capture_output=True, timeout=900, **kw)


def gradebook(url: str) -> tuple[dict, dict]:
    """(every autograded grade and comment of the assignment, the number of rows of each table)."""
    from nbgrader.api import Comment, Grade, Gradebook, SubmittedAssignment, SubmittedNotebook

    rows = {}
    with Gradebook(url, course_id="lecture_ae") as gb:
        for sub in gb.db.query(SubmittedAssignment).all():
            if sub.assignment.name != A:
                continue
            for nb in sub.notebooks:
                for g in nb.grades:
                    rows[(sub.student.id, g.name)] = (g.auto_score, g.max_score, bool(g.needs_manual_grade))
                for c in nb.comments:
                    rows[(sub.student.id, c.name, "comment")] = c.auto_comment
        counts = {cls.__name__: gb.db.query(cls).count()
                  for cls in (SubmittedAssignment, SubmittedNotebook, Grade, Comment)}
    return rows, counts


def scores(url: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for key, value in gradebook(url)[0].items():
        if len(key) == 2 and value[0] is not None:
            total[key[0]] = total.get(key[0], 0.0) + float(value[0])
    return total


def _sqlite(root) -> str:
    return f"sqlite:///{Path(root) / 'grading' / 'gradebook.db'}"


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return _grade(tmp_path_factory.mktemp("serial"), engine="nbgrader")


@pytest.fixture(scope="module")
def dask_run(tmp_path_factory):
    return _grade(tmp_path_factory.mktemp("dask"), workers=2)


def test_dask_writes_what_serial_nbgrader_writes(serial, dask_run):
    want, want_counts = gradebook(_sqlite(serial.root))
    got, got_counts = gradebook(_sqlite(dask_run.root))
    assert got_counts == want_counts
    assert got == want
    total = scores(_sqlite(dask_run.root))
    assert total["solution"] == 9 and total["wrong_shrink"] == 4 and total["wrong_ista"] == 6, total
    assert total.get("not_a_notebook", 0) == 0
    out = dask_run.logs["autograde"].stdout
    assert "3 graded, 1 failed" in out and "failed: not_a_notebook: not a valid notebook" in out, out
    assert "grades:" in out and (dask_run.root / "grading" / "grades.csv").exists()
    for student in ("solution", "wrong_shrink", "wrong_ista"):  # the autograded notebooks too
        assert _cells(dask_run.root, student) == _cells(serial.root, student), student


def _cells(root, student):
    """The autograded notebook's cells as nbgrader wrote them (kind, source, metadata without timings)."""
    nb = json.loads((Path(root) / "grading" / "autograded" / student / A / f"{A}.ipynb").read_text())
    return nb["metadata"].get("kernelspec"), [
        (c["cell_type"], c["source"], {k: v for k, v in c["metadata"].items() if k != "execution"})
        for c in nb["cells"]]


def test_presanitized_without_a_stored_notebook_is_nbgrader_s_sanitising(dask_run):
    """The record's sanitising step (Presanitized): with no notebook stored, nbgrader's own steps, same result."""
    import nbformat

    from lecture_ae.grading.autograde import Presanitized, sanitize_steps
    from lecture_ae.grading.coordinator import load_config, record_config, sanitize

    root = dask_run.root
    config = load_config(root)
    url = _sqlite(root)
    raw = (root / "grading" / "submitted" / "wrong_ista" / A / f"{A}.ipynb").read_bytes()
    want = sanitize(raw, "wrong_ista", A, A, config, url)
    resources = {"nbgrader": {"student": "wrong_ista", "assignment": A, "notebook": A, "db_url": url},
                 "unique_key": A, "metadata": {"name": A, "path": "."}}
    assert not Presanitized.presanitized
    for conf in (config, record_config(config)):  # (the coordinator's, whose nbgrader steps are Presanitized alone)
        got, _ = Presanitized(config=conf)(nbformat.reads(raw.decode(), as_version=4), resources)
        assert nbformat.writes(got) == nbformat.writes(want)
    assert sanitize_steps(config) == record_config(config).Presanitized.steps
    assert [c.__name__ for c in sanitize_steps(config)] == [
        "ClearOutput", "DeduplicateIds", "OverwriteKernelspec", "OverwriteCells", "CheckCellMetadata"]
    Presanitized.presanitized[("wrong_ista", A, A)] = json.loads(nbformat.writes(want))  # stored: taken, once
    got, _ = Presanitized(config=config)(nbformat.reads(raw.decode(), as_version=4), resources)
    assert nbformat.writes(got) == nbformat.writes(want) and not Presanitized.presanitized


def test_gradebooks_share_one_engine_per_database_and_still_reopen_it(tmp_path):
    """``_nbgrader_speed.share_engines``: compiled SQL kept per database URL; each gradebook opens afresh."""
    from nbgrader import api

    from lecture_ae.grading import _nbgrader_speed

    assert _nbgrader_speed.share_engines() and api.create_engine._lecture_ae
    one, other = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'other.db'}"
    with api.Gradebook(one, course_id="c") as gb:
        gb.add_student("ada")
        engine = gb.engine
    with api.Gradebook(one, course_id="c") as gb:
        assert gb.engine is engine and [s.id for s in gb.students] == ["ada"]
    with api.Gradebook(other, course_id="c") as gb:
        assert gb.engine is not engine and gb.students == []
    (tmp_path / "one.db").unlink()  # a database made again is a new database, not the old connection
    with api.Gradebook(one, course_id="c") as gb:
        assert gb.students == []
        gb.add_student("grace")
    with api.Gradebook(one, course_id="c") as gb:
        assert [s.id for s in gb.students] == ["grace"]
    for i in range(_nbgrader_speed._ENGINES):  # as many other databases: the oldest engine is let go
        api.create_engine(f"sqlite:///{tmp_path / f'x{i}.db'}", echo=False, future=True).dispose()
    with api.Gradebook(one, course_id="c") as gb:
        assert gb.engine is not engine and [s.id for s in gb.students] == ["grace"]


def test_the_summary_table_has_every_part(dask_run):
    out = dask_run.logs["autograde"].stdout
    for part in ("test_soft_threshold", "test_l1_objective", "test_ista", "test_update_dictionary"):
        assert part in out, out
    assert "slowest:" in out


def test_postgres_two_coordinators_at_once_then_idempotent(tmp_path_factory, dask_run):
    root = tmp_path_factory.mktemp("pg")
    with postgres_server() as make_db:
        url = make_db("gradebook")
        env = {"NBGRADER_DB_URL": url}
        # the course and its submissions (graded once by one coordinator) ...
        _grade(root, env=env, workers=2)
        first, first_counts = gradebook(url)
        assert scores(url) == scores(_sqlite(dask_run.root))
        # ... then by two coordinators at once, one per half of the class, into the same database
        procs = [subprocess.Popen([sys.executable, "-m", "lecture_ae.grading", "autograde", A, "--student", s,
                                   "--workers", "1"], cwd=root, env=_env({**ENV, **env,
                                   "NBGRADER_EXECUTE_TIMEOUT": str(EXECUTE_TIMEOUT),
                                   "LECTURE_AE_CHECK_TIME_LIMIT": str(CHECK_LIMIT)}),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for s in ("solution", "wrong_ista")]
        outs = [p.communicate(timeout=900)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        again, again_counts = gradebook(url)
        assert again_counts == first_counts and again == first
        # --only-new: nothing changed, nothing graded
        p = _cli(root, "--only-new", env=env)
        assert "0 graded, 1 failed, 3 unchanged (skipped)" in p.stdout, p.stdout  # the failed one is tried again
        # a resubmission: only that student is graded again
        submitted = root / "grading" / "submitted"
        (submitted / "wrong_shrink" / A / f"{A}.ipynb").write_bytes(
            (submitted / "solution" / A / f"{A}.ipynb").read_bytes())
        p = _cli(root, "--only-new", env=env)
        assert "1 graded" in p.stdout, p.stdout
        assert scores(url)["wrong_shrink"] == 9
        assert gradebook(url)[1] == first_counts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Cluster:
    """``dask scheduler`` and ``dask worker`` processes, as an instructor starts them."""

    def __init__(self, root, *, nworkers=2, env=None):
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        dask = str(Path(sys.executable).with_name("dask"))
        environ = _env({**ENV, **(env or {})})
        self.log = open(Path(root) / "cluster.log", "w")
        self.scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                           "--no-dashboard"], stdout=self.log, stderr=subprocess.STDOUT,
                                          env=environ, start_new_session=True)
        self.worker = subprocess.Popen([dask, "worker", self.address, "--nworkers", str(nworkers), "--nthreads", "1",
                                        "--no-dashboard", "--local-directory", str(root)], stdout=self.log,
                                       stderr=subprocess.STDOUT, env=environ, start_new_session=True)
        from dask.distributed import Client

        with Client(self.address, timeout="60s") as c:
            c.wait_for_workers(nworkers, timeout=120)

    def worker_processes(self):
        import psutil

        return [p for p in psutil.Process(self.worker.pid).children() if "python" in p.name().lower()]

    def close(self):
        for p in (self.worker, self.scheduler):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in (self.worker, self.scheduler):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.log.close()


def _busy(proc) -> bool:
    """The worker process runs a student's code now (a sandbox below it)."""
    try:
        return any("bwrap" in c.name() for c in proc.children(recursive=True))
    except Exception:
        return False


def test_a_worker_killed_while_grading_loses_nothing(tmp_path_factory, dask_run):
    root = tmp_path_factory.mktemp("killed")
    _grade(root, autograde=False)
    cluster = _Cluster(root, nworkers=2)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "lecture_ae.grading", "autograde", A, "--scheduler",
                                 cluster.address], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=_env({**ENV, "NBGRADER_EXECUTE_TIMEOUT": str(EXECUTE_TIMEOUT),
                                                     "LECTURE_AE_CHECK_TIME_LIMIT": str(CHECK_LIMIT)}))
        killed = None
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            for w in cluster.worker_processes():
                if _busy(w):
                    w.kill()  # SIGKILL in the middle of a task: its nanny starts a new worker
                    killed = w.pid
                    break
            time.sleep(0.2)
        out = proc.communicate(timeout=900)[0]
    finally:
        cluster.close()
    assert killed is not None, f"no worker was seen grading:\n{out}"
    assert proc.returncode == 1, out  # the file that is not a notebook
    assert "3 graded, 1 failed" in out, out
    assert scores(_sqlite(root)) == scores(_sqlite(dask_run.root))
    assert gradebook(_sqlite(root)) == gradebook(_sqlite(dask_run.root))


def test_tasks_that_keep_failing_are_recorded_with_the_reason(tmp_path_factory):
    root = tmp_path_factory.mktemp("nobwrap")
    _grade(root, autograde=False)
    # a worker host without bubblewrap: every task fails there, on every try
    cluster = _Cluster(root, nworkers=1, env={"PATH": str(Path(sys.executable).parent)})
    try:
        p = _cli(root, "--scheduler", cluster.address)
    finally:
        cluster.close()
    assert p.returncode == 1
    assert "0 graded, 4 failed" in p.stdout, p.stdout
    assert "failed: solution: grading failed 3 times" in p.stdout and "bubblewrap" in p.stdout, p.stdout
    total = scores(_sqlite(root))
    assert set(total) >= {"solution", "wrong_shrink", "wrong_ista"} and not any(total.values()), total
    graded = json.loads((root / "grading" / "autograded" / "solution" / A / f"{A}.ipynb").read_text())
    assert "bubblewrap" in json.dumps(graded)
    # nothing gradable: the failure is recorded without a cluster (this scheduler is not there)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    p = _cli(root, "--student", "not_a_notebook", "--scheduler", nowhere)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "0 graded, 1 failed" in p.stdout and "not_a_notebook: not a valid notebook" in p.stdout, p.stdout


def test_an_interrupted_run_leaves_a_consistent_gradebook_and_only_new_finishes(tmp_path_factory, dask_run):
    root = tmp_path_factory.mktemp("interrupted")
    _grade(root, autograde=False)
    environ = _env({**ENV, "NBGRADER_EXECUTE_TIMEOUT": str(EXECUTE_TIMEOUT),
                    "LECTURE_AE_CHECK_TIME_LIMIT": str(CHECK_LIMIT)})
    proc = subprocess.Popen([sys.executable, "-m", "lecture_ae.grading", "autograde", A, "--workers", "1"], cwd=root,
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((root / "grading" / "autograded").glob(f"*/{A}/{A}.ipynb"))) >= 1:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, out
    assert "INTERRUPTED" in out, out
    rows, _ = gradebook(_sqlite(root))
    done = {key[0] for key in rows}
    assert 1 <= len(done) < 4, out
    for student in done:  # every recorded student is whole: all parts scored
        assert sum(1 for key, v in rows.items() if key[0] == student and len(key) == 2 and v[0] is not None) >= 4 \
            or student == "not_a_notebook"
    skipped = len(done - {"not_a_notebook"})  # a failure is tried again
    p = _cli(root, "--only-new")
    assert f"{skipped} unchanged (skipped)" in p.stdout, p.stdout
    assert scores(_sqlite(root)) == scores(_sqlite(dask_run.root))
    assert gradebook(_sqlite(root)) == gradebook(_sqlite(dask_run.root))


def test_the_cached_metadata_check_accepts_and_rejects_what_nbgrader_does():
    """``_nbgrader_speed``: the schema is checked once, every cell's metadata exactly as nbgrader did."""
    import copy

    import jsonschema
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator
    from nbgrader.nbgraderformat.common import BaseMetadataValidator, SchemaTooOldError

    from lecture_ae.grading import _nbgrader_speed

    assert _nbgrader_speed.install() and _nbgrader_speed.install()  # installed (autograde.py) and idempotent
    patched = BaseMetadataValidator.validate_cell
    assert patched._lecture_ae
    original = patched.__wrapped__
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "exercises" / A / f"{A}.ipynb", as_version=4)
    cells = [c for c in nb.cells if "nbgrader" in c.metadata]
    assert len(cells) >= 10
    validator = MetadataValidator()
    validator.validate_nb(nb)  # the release is valid: nothing raised

    def outcome(fn, cell):
        try:
            fn(validator, cell)
        except Exception as exc:  # noqa: BLE001 - the comparison is the point
            return type(exc), str(exc).splitlines()[0]
        return None

    broken = []
    for cell in cells[:6]:
        for key, value in (("points", "two"), ("grade", "yes"), ("surprise", 1), ("grade_id", 7)):
            bad = copy.deepcopy(cell)
            bad.metadata.nbgrader[key] = value
            broken.append(bad)
        old = copy.deepcopy(cell)
        old.metadata.nbgrader["schema_version"] = 1
        broken.append(old)
    empty = copy.deepcopy(cells[0])
    empty.metadata["nbgrader"] = None  # nbgrader itself fails on it; so must the cached check
    broken.insert(1, empty)
    raised = 0
    for cell in cells + broken:
        mine, theirs = outcome(patched, cell), outcome(original, cell)
        assert mine == theirs, (cell.metadata.nbgrader, mine, theirs)
        raised += mine is not None
    assert raised == len(broken)
    assert outcome(patched, broken[-1])[0] is SchemaTooOldError
    assert outcome(patched, broken[0])[0] is jsonschema.ValidationError
