"""The trusted grader's parts one by one: the wire format, the sandbox, the child and its calls.

The end-to-end tests (tests/test_nbgrader_ps*.py) grade whole hostile notebooks through
nbgrader; these tests pin each defence to one small case, so a regression names its layer.
"""
from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lecture_ae.grading import _wire
from lecture_ae.grading.sandbox import Limits, Sandbox, bwrap_status
from lecture_ae.grading.trusted import Child, RemoteFunction, StudentError

ROOT = Path(__file__).resolve().parents[1]
HAVE_BWRAP, WHY = bwrap_status()
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP and not os.environ.get("CI"), reason=WHY)


# --------------------------------------------------------------------------- the wire
def _roundtrip(value, **kw):
    r, w = os.pipe()
    try:
        _wire.write_frame(w, value)
        return _wire.read_frame(r, **kw)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("value", [
    torch.tensor(0.5, dtype=torch.float64),  # 0-d stays 0-d
    torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),  # not contiguous
    torch.tensor([True, False]),
    torch.zeros(0, 3, dtype=torch.int64),
    np.float32(2.5),
    np.arange(6, dtype=np.int16).reshape(2, 3),
])
def test_arrays_keep_shape_dtype_and_values(value):
    got = _roundtrip(value)
    if isinstance(value, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == value.dtype and got.shape == value.shape
        assert torch.equal(got, value)
    elif isinstance(value, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == value.dtype and np.array_equal(got, value)
    else:
        assert got == value.item()


def test_plain_data_nested_and_special_floats():
    value = {"a": [1, 2.5, None, True, "s"], "b": (float("inf"), float("-inf")), "c": {"d": [torch.ones(2)]}}
    got = _roundtrip(value)
    assert got["a"] == [1, 2.5, None, True, "s"] and got["b"] == (math.inf, -math.inf)
    assert math.isnan(_roundtrip(float("nan")))
    assert torch.equal(got["c"]["d"][0], torch.ones(2))


def test_a_generator_travels_with_its_state():
    g = torch.Generator().manual_seed(3)
    torch.rand(5, generator=g)
    got = _roundtrip(g)
    assert torch.equal(torch.rand(4, generator=got), torch.rand(4, generator=g))


def test_objects_that_are_not_data_arrive_as_opaque_never_as_objects():
    class Sneaky:
        def __reduce__(self):  # pickle would run this; the wire never pickles
            return (os.system, ("echo pwned",))

    got = _roundtrip({"x": Sneaky(), "f": lambda: 1, "k": {1: 2}})
    assert all(isinstance(v, _wire.Opaque) for v in got.values())
    assert got["x"].type_name == "Sneaky"


def _raw(header: bytes, body: bytes = b"", magic=_wire.MAGIC, sizes=None):
    import struct

    hl = len(header) if sizes is None else sizes[0]
    bl = len(body) if sizes is None else sizes[1]
    return magic + struct.pack("<IQ", hl, bl) + header + body


@pytest.mark.parametrize("frame, message", [
    (_raw(b"{}", magic=b"XXXX"), "not a frame"),
    (_raw(b"not json"), "header is not JSON"),
    (_raw(b'{"m": 1}'), "bad header"),
    (_raw(b'{"m": 1, "b": [5]}', b"abc"), "blob sizes do not agree"),
    (_raw(b'{"m": {"T": 0, "dtype": "float64", "shape": [3]}, "b": [8]}', b"\0" * 8), "shape and data do not agree"),
    (_raw(b'{"m": {"T": 0, "dtype": "object", "shape": [1]}, "b": [8]}', b"\0" * 8), "not allowed"),
    (_raw(b'{"m": {"T": 7, "dtype": "float64", "shape": [1]}, "b": [8]}', b"\0" * 8), "bad blob index"),
    (_raw(b'{"m": {"zz": 1}, "b": []}'), "unknown node"),
    (_raw(b"{}", sizes=(10, _wire.MAX_FRAME_BYTES)), "frame too large"),
])
def test_a_forged_frame_is_refused(frame, message):
    r, w = os.pipe()
    try:
        os.write(w, frame)
        os.close(w)
        w = None
        with pytest.raises(_wire.WireError, match=message):
            _wire.read_frame(r, deadline=None)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_a_silent_peer_times_out():
    import time

    r, w = os.pipe()
    try:
        with pytest.raises(_wire.WireTimeout):
            _wire.read_frame(r, deadline=time.monotonic() + 0.2)
    finally:
        os.close(r)
        os.close(w)


# --------------------------------------------------------------------------- the sandbox
def _inside(code: str, tmp_path, *, child_view=False, limits=None) -> subprocess.CompletedProcess:
    sandbox = Sandbox(enabled=True, limits=limits or Limits.from_env())
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "data.txt").write_text("the submission's file")
    uid = sandbox.new_uid()
    sandbox.prepare(str(work), uid)
    env = sandbox.environment(str(work))
    cmd = sandbox.command([sys.executable, "-I", "-c", textwrap.dedent(code)], workdir=str(work),
                          child_view=child_view, env=env, uid=uid)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(work))


@needs_bwrap
def test_the_sandbox_shows_no_course_file_and_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("NBGRADER_DB_URL", "postgresql://grader:secret@host/db")
    secret_dir = tmp_path / "course"
    secret_dir.mkdir()
    (secret_dir / "gradebook.db").write_text("grades")
    with socket.socket() as listener:  # a service of the host, on its loopback
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        p = _inside(f"""
            import os, socket
            out = []
            for path in [{str(ROOT / 'solutions')!r}, {str(ROOT / 'README.md')!r}, {str(secret_dir)!r},
                         {str(ROOT / 'lecture_ae' / 'grading' / 'ps1.py')!r}, {str(ROOT / '.git')!r}, os.getcwd() + '/course']:
                out.append(('seen' if os.path.exists(path) else 'absent') + ' ' + path)
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=2)
                out.append('network: reached the host')
            except OSError:
                out.append('network: none')
            out.append('db url: ' + repr(os.environ.get('NBGRADER_DB_URL')))
            out.append('uid: ' + str(os.getuid()))
            out.append('data: ' + open('data.txt').read())
            out.append('home: ' + str(sorted(os.listdir(os.path.expanduser('~')))))
            print(chr(10).join(out))
        """, tmp_path, child_view=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert all(line.startswith("absent") for line in lines[:6]), lines
    assert lines[-1] == "home: ['data.txt']", lines  # the working folder, nothing of the instructor's home
    assert "network: none" in lines and "db url: None" in lines
    assert "data: the submission's file" in lines
    if os.geteuid() == 0:  # a throwaway user, not root
        assert int(lines[lines.index(next(x for x in lines if x.startswith("uid")))].split()[1]) >= 10**9


@needs_bwrap
def test_the_package_is_read_only_and_the_child_sees_only_its_public_part(tmp_path):
    p = _inside(f"""
        import os
        pkg = {str(ROOT / 'lecture_ae')!r}
        try:
            open(os.path.join(pkg, 'grading', '_wire.py'), 'a').write('# changed')
            print('wrote the package')
        except OSError:
            print('read-only')
        print(sorted(os.listdir(os.path.join(pkg, 'grading'))))
        print(os.path.exists(os.path.join(pkg, 'sparse')))
    """, tmp_path, child_view=True)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0] == "read-only"
    assert "ps1.py" not in out[1] and "checks.py" not in out[1] and "_child.py" in out[1]
    assert out[2] == "False"


@needs_bwrap
def test_writing_fills_a_bounded_tmpfs_not_the_disk(tmp_path):
    p = _inside("""
        import os
        written = 0
        try:
            for k in range(100):
                with open(f'big{k}', 'wb') as f:
                    f.write(b'x' * (4 << 20))
                written += 4
        except OSError as exc:
            print('stopped', written, exc.errno)
        else:
            print('wrote', written)
    """, tmp_path, limits=Limits.from_env(tmp_mb=16))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "stopped" and int(p.stdout.split()[1]) <= 16
    assert sorted(x.name for x in (tmp_path / "work").iterdir()) == ["data.txt"]  # nothing reached the host


@needs_bwrap
def test_limits_hold_inside(tmp_path):
    p = _inside("""
        import resource
        print(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20, resource.getrlimit(resource.RLIMIT_NPROC)[0])
        try:
            bytearray(600 << 20)
            print('allocated')
        except MemoryError:
            print('MemoryError')
    """, tmp_path, limits=Limits.from_env(memory_mb=512, processes=16))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["512", "16", "MemoryError"]


def test_bad_limits_name_the_setting(monkeypatch):
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)
    monkeypatch.setenv("LECTURE_AE_SANDBOX_CPU", "lots")
    with pytest.raises(ValueError, match="LECTURE_AE_SANDBOX_CPU"):
        Limits.from_env()


# --------------------------------------------------------------------------- the child
@pytest.fixture(scope="module")
def child():
    if not HAVE_BWRAP and not os.environ.get("CI"):
        pytest.skip(WHY)
    with Child(Sandbox(enabled=True, limits=Limits.from_env(cell_seconds=20))) as c:
        yield c


def test_a_remote_function_answers_with_plain_data(child):
    assert child.exec_cell("cell", "import torch\ndef double(x):\n    return 2 * x\n")["ok"]
    f = RemoteFunction(child, "double")
    assert torch.equal(f(torch.arange(3)), torch.tensor([0, 2, 4]))
    out = f.remote_call((torch.tensor(1.5),), {})
    assert out.error is None and out.value.shape == () and float(out.value) == 3.0


def test_errors_mutations_and_reference_calls_are_reported(child):
    code = textwrap.dedent("""
        def broken(x):
            raise KeyError('nope')

        def in_place(x):
            x.mul_(2)
            return x

        def delegates(x):
            from lecture_ae.sparse import soft_threshold
            return soft_threshold(x, 0.1)
    """)
    assert child.exec_cell("defs", code)["ok"]
    out = RemoteFunction(child, "broken").remote_call((1,), {})
    assert type(out.error).__name__ == "KeyError" and "nope" in out.error_text
    with pytest.raises(StudentError, match="broken raised KeyError"):
        RemoteFunction(child, "broken")(1)
    x = torch.ones(3)
    out = RemoteFunction(child, "in_place").remote_call((x,), {})
    assert out.mutated_in_child == [0] and torch.equal(x, torch.ones(3))  # the grader's copy is untouched
    out = RemoteFunction(child, "delegates").remote_call((torch.ones(3),), {})
    assert out.error is not None and out.reference_calls


def test_a_hanging_or_dying_call_costs_the_call_and_the_child_comes_back(child):
    assert child.exec_cell("defs2", textwrap.dedent("""
        import os
        STATE = 41

        def hang(x):
            while True:
                try:
                    pass
                except BaseException:
                    pass

        def die(x):
            os._exit(3)

        def state(x):
            return STATE + x
    """))["ok"]
    restarts = child.restarts
    out = RemoteFunction(child, "hang").remote_call((1,), {}, limit=1.0)
    assert out.timed_out
    assert RemoteFunction(child, "state")(1) == 42  # restarted, the cells run again
    out = RemoteFunction(child, "die").remote_call((1,), {}, limit=5.0)
    assert out.error is not None and "ended" in str(out.error) or "killed" in str(out.error)
    assert RemoteFunction(child, "state")(1) == 42
    assert child.restarts == restarts + 2


def test_a_huge_answer_is_a_protocol_failure_not_a_grader_allocation(child):
    assert child.exec_cell("defs3", "import torch\ndef huge(x):\n    return torch.zeros(20_000_000)\n")["ok"]
    out = RemoteFunction(child, "huge").remote_call((1,), {}, limit=20.0)
    assert out.error is not None and "protocol" in str(out.error)


def test_a_cell_that_hangs_is_reported_and_skipped_in_the_replay(tmp_path):
    if not HAVE_BWRAP and not os.environ.get("CI"):
        pytest.skip(WHY)
    with Child(Sandbox(enabled=True, limits=Limits.from_env(cell_seconds=1.5))) as c:
        assert c.exec_cell("a", "x = 1")["ok"]
        result = c.exec_cell("b", "while True:\n    pass")
        assert not result["ok"] and "did not finish within 1.5 s" in result["failure"]
        assert c.exec_cell("c", "y = x + 1")["ok"]
        assert c.get("y") == 2


@needs_bwrap
def test_the_kernel_pass_leaves_no_kernel_running():
    """Each kernel of the pass (the one restarted after a hung cell too) is shut down: a long-lived
    grading process (a Dask worker) must not collect one sandboxed kernel per submission."""
    import threading
    import time

    import nbformat
    import psutil

    from lecture_ae.grading.autograde import run_kernel_pass
    from lecture_ae.grading.sandbox import require

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("while True:\n    pass"),
                nbformat.v4.new_code_cell("print(x + 1)")]
    me = psutil.Process()

    def below():
        return {p.pid for p in me.children(recursive=True)}

    before = below()
    threads_before, fds_before = {t.ident for t in threading.enumerate()}, me.num_fds()
    executed, problems = run_kernel_pass(nb, sandbox=require(True), cell_timeout=3)
    assert list(problems) == [1] and "did not finish" in problems[1]
    assert executed.cells[2].outputs[0]["text"].strip() == "2"
    deadline = time.monotonic() + 10
    while (left := below() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left running after the kernel pass: {sorted(left)}"
    # nor the kernel clients' channels: a heartbeat thread and zmq sockets per kernel made a Dask
    # worker slower with every submission it graded
    run_kernel_pass(nb, sandbox=require(True), cell_timeout=3)
    extra = [t for t in threading.enumerate() if t.ident not in threads_before]
    assert not extra, f"threads left running after the kernel pass: {[type(t).__name__ for t in extra]}"
    assert me.num_fds() <= fds_before + 2, (fds_before, me.num_fds())
