"""The sandbox that student code runs in while it is graded: bubblewrap plus resource limits.

Two kinds of process run a student's code during grading, each in a sandbox of its own:
the Jupyter kernel of nbgrader's pass over the notebook (outputs and plots) and the trusted
grader's child process (it answers the grader's calls of the student's functions). Both are
started through :meth:`Sandbox.command`, which wraps the command in

* ``bwrap`` (bubblewrap, Debian package ``bubblewrap``): a new mount namespace that shows only
  the system (``/usr``, ``/etc``, ...), the Python installation and the virtual environment, read
  only, and ``lecture_ae`` (read only; for the child only its public part, see
  :data:`CHILD_MODULES`); a private ``/tmp``; the submission's fresh working folder (also
  ``HOME``), a size-limited tmpfs holding the submission's data files (writes to it fill bounded
  memory, never the grader's disk). The course folder, ``solutions/``, ``grading/``, the gradebook, the
  other submissions and the instructor's home are not there at all. New network, PID, IPC and
  UTS namespaces (no network: not even the loopback of the host, so one student's kernel cannot
  reach another's), ``--die-with-parent``, ``--new-session``, a cleared environment.
* ``lecture_ae/grading/_launch.py`` inside the sandbox: resource limits (:class:`Limits`) and,
  when the grader runs as root, a throwaway user id, so that the process limit counts this
  sandbox's processes only and nothing the student starts keeps root's rights.

Without bubblewrap (or with ``enabled=False``, the ``--no-sandbox`` of the command line) the
command runs with the limits only, in its working folder, and can read every file the
instructor can: :func:`require` refuses to grade then unless told otherwise.
"""
from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import site
import subprocess
import sys
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["Limits", "Sandbox", "SandboxUnavailable", "CHILD_MODULES", "bwrap_status", "require"]

#: The part of ``lecture_ae`` the trusted grader's child can import (paths relative to the
#: package). Everything else in the package, the reference implementations and the checks
#: included, is absent from the child's file system; importing it gives a stub whose use
#: scores zero ("calls the reference implementation").
CHILD_MODULES = (
    "__init__.py",
    "runtime.py",
    "_checks.py",
    "data",
    "grading/__init__.py",
    "grading/_child.py",
    "grading/_wire.py",
    "grading/_launch.py",
    "grading/guard.py",
)

_MB = 1024 * 1024
#: Settings passed into the sandbox (nothing else of the grader's environment is: NBGRADER_DB_URL
#: may hold a password).
_FORWARDED = ("LECTURE_AE_CHECK_TIME_LIMIT", "LECTURE_AE_FULL")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or does not work here, and grading without a sandbox was not allowed."""


def _env_number(name: str, default, kind=float):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None
    if number <= 0:
        raise ValueError(f"{name}={value!r} must be positive")
    return number


@dataclass
class Limits:
    """Limits of one sandboxed process (and what it starts), each a setting with a default.

    ====================  ===============================  =========  ==================================
    field                 environment variable             default    what
    ====================  ===============================  =========  ==================================
    ``cpu_seconds``       ``LECTURE_AE_SANDBOX_CPU``       600        CPU time of the process (RLIMIT_CPU)
    ``memory_mb``         ``LECTURE_AE_SANDBOX_MEMORY_MB`` 3072       address space (RLIMIT_AS)
    ``processes``         ``LECTURE_AE_SANDBOX_PROCESSES`` 64         processes and threads of the sandbox
    ``open_files``        ``LECTURE_AE_SANDBOX_FILES``     256        open files (RLIMIT_NOFILE)
    ``file_size_mb``      ``LECTURE_AE_SANDBOX_FILE_MB``   64         size of a file it writes (RLIMIT_FSIZE)
    ``tmp_mb``            ``LECTURE_AE_SANDBOX_TMP_MB``    256        size of its /tmp and its working folder
    ``output_kb``         ``LECTURE_AE_SANDBOX_OUTPUT_KB`` 256        printed output kept (the rest is cut)
    ``cell_seconds``      ``LECTURE_AE_CELL_TIME_LIMIT``   60         wall time of one notebook cell
    ====================  ===============================  =========  ==================================

    The wall time of one call of a student's function is the checks' limit
    (``LECTURE_AE_CHECK_TIME_LIMIT``, default 10 s); nbgrader's kernel pass uses
    ``NBGRADER_EXECUTE_TIMEOUT`` per cell.
    """

    cpu_seconds: int = 600
    memory_mb: int = 3072
    processes: int = 64
    open_files: int = 256
    file_size_mb: int = 64
    tmp_mb: int = 256
    output_kb: int = 256
    cell_seconds: float = 60.0

    _ENV = {
        "cpu_seconds": "LECTURE_AE_SANDBOX_CPU",
        "memory_mb": "LECTURE_AE_SANDBOX_MEMORY_MB",
        "processes": "LECTURE_AE_SANDBOX_PROCESSES",
        "open_files": "LECTURE_AE_SANDBOX_FILES",
        "file_size_mb": "LECTURE_AE_SANDBOX_FILE_MB",
        "tmp_mb": "LECTURE_AE_SANDBOX_TMP_MB",
        "output_kb": "LECTURE_AE_SANDBOX_OUTPUT_KB",
        "cell_seconds": "LECTURE_AE_CELL_TIME_LIMIT",
    }

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive number, got {value!r}")

    @classmethod
    def from_env(cls, **overrides) -> "Limits":
        """The limits from the environment variables (see the table), ``overrides`` first."""
        values = {}
        for f in fields(cls):
            if f.name.startswith("_"):
                continue
            kind = float if f.type in ("float", float) else int
            values[f.name] = _env_number(cls._ENV[f.name], getattr(cls, f.name), kind)
        values.update(overrides)
        return cls(**values)

    def setting(self, name: str) -> str:
        """The environment variable that sets the limit ``name`` (for messages)."""
        return self._ENV[name]

    def rlimits(self) -> dict[str, int]:
        return {
            "CPU": int(self.cpu_seconds),
            "AS": int(self.memory_mb) * _MB,
            "NPROC": int(self.processes),
            "NOFILE": int(self.open_files),
            "FSIZE": int(self.file_size_mb) * _MB,
            "CORE": 0,
        }


@functools.lru_cache(maxsize=None)
def bwrap_status() -> tuple[bool, str]:
    """(True, path) when bubblewrap runs here, else (False, why)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False, "bubblewrap (bwrap) is not installed: sudo apt-get install bubblewrap"
    probe = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-net",
             "--die-with-parent", "true"]
    if os.geteuid() != 0:
        probe.insert(1, "--unshare-user")
    try:
        p = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap does not run here: {exc}"
    if p.returncode != 0:
        return False, f"bwrap does not run here: {p.stderr.strip() or p.returncode}"
    return True, exe


def require(enabled: bool = True) -> "Sandbox":
    """A :class:`Sandbox`; raises :class:`SandboxUnavailable` when bubblewrap is needed but missing.

    ``enabled=False`` (the command line's ``--no-sandbox``) grades without bubblewrap, with a warning.
    """
    if not enabled:
        warnings.warn("grading WITHOUT a sandbox (--no-sandbox): the students' code can read every file you can "
                      "read (solutions/, the gradebook) and reach the network; only the resource limits and the "
                      "separate processes remain", RuntimeWarning, stacklevel=2)
        return Sandbox(enabled=False)
    ok, info = bwrap_status()
    if not ok:
        raise SandboxUnavailable(f"{info}. Grading untrusted notebooks needs it; to grade anyway, without "
                                 "isolation, pass --no-sandbox (or set LECTURE_AE_NO_SANDBOX=1).")
    return Sandbox(enabled=True)


def _python_paths() -> list[str]:
    """Folders the interpreter and the virtual environment need: prefixes and site-packages."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(p for p in site.getsitepackages() if os.path.isdir(p))
    # Not the other entries of sys.path: they hold the current folder (``python -m`` puts the
    # course folder there) or a test runner's root (the repository, solutions/ included).
    # lecture_ae itself is bound on its own, also when installed in editable mode.
    return sorted(os.path.realpath(p) for p in paths)


def _lecture_ae_dir() -> str:
    import lecture_ae

    return os.path.dirname(os.path.realpath(lecture_ae.__file__))


def _covered(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@dataclass
class Sandbox:
    """How to start a command that runs student code (see the module's doc).

    ``enabled``: bubblewrap is used (else only the limits apply). ``limits``: :class:`Limits`.
    """

    enabled: bool = True
    limits: Limits = field(default_factory=Limits.from_env)

    # --------------------------------------------------------------- the command line
    def command(self, argv, *, workdir, child_view: bool = False, rw=(), env=None, uid: int | None = None) -> list[str]:
        """``argv`` wrapped in the sandbox, run in ``workdir`` (which it may write).

        ``child_view``: only the public part of lecture_ae (:data:`CHILD_MODULES`) is visible.
        ``rw``: more folders it may write (at the same path inside, e.g. a kernel's sockets).
        ``env``: the environment inside (nothing else is inherited). ``uid``: the user id to run
        as when the grader is root (:meth:`new_uid`; default: a new one).
        """
        workdir = os.path.realpath(workdir)
        launch = [sys.executable, "-I", "-S", os.path.join(_lecture_ae_dir(), "grading", "_launch.py")]
        for name, value in self.limits.rlimits().items():
            launch += ["--rlimit", f"{name}={value}"]
        if os.geteuid() == 0 and self.enabled:
            uid = self.new_uid() if uid is None else uid
            launch += ["--uid", str(uid), "--gid", str(uid)]
        launch += ["--"] + [str(a) for a in argv]
        if not self.enabled:
            return launch
        return self._bwrap(workdir, child_view, [os.path.realpath(p) for p in rw], dict(env or {})) + launch

    @staticmethod
    def new_uid() -> int:
        """A user id no account uses (from a range of a billion): a process limit of its own."""
        return 1_000_000_000 + secrets.randbelow(1_000_000_000)

    def _bwrap(self, workdir: str, child_view: bool, rw: list[str], env: dict[str, str]) -> list[str]:
        ok, exe = bwrap_status()
        if not ok:
            raise SandboxUnavailable(exe)
        args = [exe]
        made = {"/"}

        def parents(path: str):
            """--dir for the missing parents of a mount point (bwrap would make them 0700)."""
            out = []
            parts = Path(path).parts[1:-1]
            cur = ""
            for part in parts:
                cur += "/" + part
                if cur not in made and not _covered(cur, binds):
                    out += ["--perms", "0755", "--dir", cur]
                    made.add(cur)
            return out

        mounted: list[str] = []  # every mount point
        binds: list[str] = []  # the host folders among them (their sub-folders exist, with their own rights)

        def mount(kind: str, src: str, dest: str | None = None):
            dest = dest or src
            args.extend(parents(dest))
            args.extend([kind, src, dest])
            mounted.append(dest)
            binds.append(dest)
            made.add(dest)

        for top in ("/usr", "/etc", "/opt"):
            if os.path.isdir(top):
                mount("--ro-bind", top)
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
                made.add(top)
            elif os.path.isdir(top):
                mount("--ro-bind", top)
        args += ["--dev", "/dev", "--proc", "/proc",
                 "--perms", "1777", "--size", str(int(self.limits.tmp_mb) * _MB), "--tmpfs", "/tmp",
                 "--perms", "1777", "--size", str(int(self.limits.tmp_mb) * _MB), "--tmpfs", "/dev/shm"]
        made.update({"/dev", "/proc", "/tmp", "/dev/shm"})
        mounted += ["/tmp", "/dev", "/proc"]
        pkg = _lecture_ae_dir()
        for path in _python_paths():
            if not _covered(path, binds) and path != pkg:
                mount("--ro-bind", path)
        if child_view:
            # the package folder as an empty tmpfs, then only the public files in it
            if _covered(pkg, binds):
                args += ["--perms", "0755", "--tmpfs", pkg]
            else:
                args.extend(parents(pkg))
                args += ["--perms", "0755", "--tmpfs", pkg]
                mounted.append(pkg)
            for rel in CHILD_MODULES:
                src = os.path.join(pkg, rel)
                if os.path.isdir(src):
                    for sub_root, dirs, files in os.walk(src):
                        dirs[:] = [d for d in dirs if d != "__pycache__"]
                        for fname in files:
                            if fname.endswith(".py"):
                                p = os.path.join(sub_root, fname)
                                args += self._file_bind(p, pkg, made)
                elif os.path.isfile(src):
                    args += self._file_bind(src, pkg, made)
        elif not _covered(pkg, binds):
            mount("--ro-bind", pkg)
        for path in rw:
            mount("--bind", path)
        # the working folder: a tmpfs of tmp_mb (what the student writes fills memory of a bounded
        # size, not the grader's disk), with the staged files bound into it one by one
        args.extend(parents(workdir))
        args += ["--size", str(int(self.limits.tmp_mb) * _MB), "--perms", "1777", "--tmpfs", workdir]
        mounted.append(workdir)
        made.add(workdir)
        for sub_root, dirs, files in os.walk(workdir):
            dirs.sort()
            for d in dirs:
                args += ["--perms", "1777", "--dir", os.path.join(sub_root, d)]
            for fname in sorted(files):
                p = os.path.join(sub_root, fname)
                if os.path.isfile(p) and not os.path.islink(p):
                    args += ["--bind", p, p]
        args += ["--chdir", workdir, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                 "--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv"]
        if os.geteuid() != 0:
            args.insert(1, "--unshare-user")
        for key, value in env.items():
            args += ["--setenv", key, str(value)]
        return args

    @staticmethod
    def _file_bind(path: str, pkg: str, made: set) -> list[str]:
        out = []
        rel_parent = os.path.dirname(os.path.relpath(path, pkg))
        cur = pkg
        for part in [p for p in rel_parent.split(os.sep) if p]:
            cur = os.path.join(cur, part)
            if cur not in made:
                out += ["--perms", "0755", "--dir", cur]
                made.add(cur)
        return out + ["--ro-bind", path, path]

    # ---------------------------------------------------------------- working folders
    def reclaim(self, folder) -> None:
        """Take a folder that a sandboxed process could write to back (root-owned, 0755): the files
        in it stay writable by their owner, but no new file can be made there (no disk filling)."""
        if os.geteuid() != 0 or not self.enabled:
            return
        with contextlib.suppress(OSError):
            os.chown(folder, 0, 0)
            os.chmod(folder, 0o755)

    def prepare(self, folder, uid: int | None) -> None:
        """Give the sandbox's user the folder (the grader keeps its own rights as root)."""
        if uid is None or os.geteuid() != 0 or not self.enabled:
            return
        for root, dirs, files in os.walk(folder):
            for name in [root] + [os.path.join(root, f) for f in files] + [os.path.join(root, d) for d in dirs]:
                try:
                    os.chown(name, uid, uid, follow_symlinks=False)
                except FileNotFoundError:
                    pass

    def environment(self, workdir, **extra) -> dict[str, str]:
        """The environment inside: a search path, a home in the working folder, one thread per library."""
        venv_bin = os.path.dirname(sys.executable)
        env = {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LECTURE_AE_PROGRESS": "0",
            "MPLCONFIGDIR": os.path.join(str(workdir), ".config", "matplotlib"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
        for key in _FORWARDED:  # the course's settings that the code inside reads
            if os.environ.get(key):
                env[key] = os.environ[key]
        env.update({k: str(v) for k, v in extra.items()})
        return env

    @staticmethod
    def seed_matplotlib_cache(workdir) -> None:
        """Copy the instructor's matplotlib font list into the sandbox's config folder (saves the
        second it takes to rebuild it in every sandbox)."""
        try:
            import matplotlib
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            return
        dest = Path(workdir) / ".config" / "matplotlib"
        dest.mkdir(parents=True, exist_ok=True)
        try:
            cache = Path(matplotlib.get_cachedir())
        except Exception:  # pragma: no cover - no cache folder
            return
        for f in cache.glob("fontlist-*.json"):
            shutil.copy(f, dest / f.name)
