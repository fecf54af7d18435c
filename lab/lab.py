"""JupyterLab for the course: the student's (`make lab`) or the instructor's (`make formgrader`).

Student (default)
    Releases every assignment of ``exercises/`` to a local nbgrader exchange (``lab/exchange``,
    ``--exchange``) with the real ``nbgrader release_assignment``, then starts JupyterLab in the
    student's folder (``lab/work``, ``--home``) with the profile ``lab/student/``: nbgrader's
    student tools only (the Assignments tab to fetch and submit, the Validate button), the
    instructor's (Formgrader, Create Assignment, Courses) disabled, as their lab plugins
    (``labconfig/page_config.json``) and as server extensions (``jupyter_server_config.json``).

Instructor (``--instructor``)
    Starts JupyterLab in the course folder (the repository root, whose ``nbgrader_config.py``
    sets the layout and the gradebook) with every nbgrader tool, and the same exchange
    (profile ``lab/instructor/``), so that the Formgrader collects what students submitted.

Everything else is passed on to ``jupyter lab`` (e.g. ``--port 8890 --no-browser``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

LAB = Path(__file__).resolve().parent
ROOT = LAB.parent
BIN = Path(sys.executable).parent
COURSE_ID = "lecture_ae"
#: The server extensions each profile runs (the student's lab has no instructor tools).
STUDENT_EXTENSIONS = {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.assignment_list": True,
    "nbgrader.server_extensions.validate_assignment": True,
}


def assignments() -> list[str]:
    """The released assignments: one folder per assignment in exercises/."""
    return sorted(p.name for p in (ROOT / "exercises").iterdir() if (p / f"{p.name}.ipynb").is_file())


def _env(profile: str, exchange: Path) -> dict[str, str]:
    """The environment of the profile: its folder on Jupyter's configuration path, the exchange.

    ``JUPYTER_CONFIG_PATH`` (read-only, before the environment's own configuration, where
    nbgrader switches all its tools on) rather than ``JUPYTER_CONFIG_DIR``: Jupyter writes into its
    config dir (workspaces, settings), and those stay in the user's own (~/.jupyter).
    """
    env = dict(os.environ)
    extra = [p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(LAB / profile), *extra])
    env["LECTURE_AE_EXCHANGE"] = str(exchange)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # nbgrader runs alembic from PATH
    return env


#: Run in the course folder: nbgrader's own release (ExchangeReleaseAssignment, as
#: ``nbgrader release_assignment --force``), all assignments in one process (nbgrader's start-up
#: takes seconds).  The configuration is the course's nbgrader_config.py plus the exchange.
_RELEASE = """
import sys
from nbgrader.apps import NbGrader
from nbgrader.apps.api import NbGraderAPI
from nbgrader.coursedir import CourseDirectory

app = NbGrader()
app.load_config_file()
config = app.config
config.Exchange.root = sys.argv[1]
config.ExchangeReleaseAssignment.force = True
api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
for name in sys.argv[2:]:
    result = api.release_assignment(name)
    if not result["success"]:
        sys.exit(f"release of {name} failed: {result.get('error') or result.get('log')}")
"""


def release(exchange: Path, names=None) -> None:
    """Release every assignment of exercises/ (or ``names``) to the nbgrader exchange ``exchange``."""
    exchange.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", _RELEASE, str(exchange), *(names or assignments())],
                          cwd=ROOT, env=_env("instructor", exchange), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"releasing the assignments to {exchange} failed:\n{proc.stdout}\n{proc.stderr}")


def lab_command(*, instructor: bool, home: Path, extra: list[str]) -> list[str]:
    jupyter = shutil.which("jupyter", path=str(BIN)) or "jupyter"
    cmd = [jupyter, "lab", f"--ServerApp.root_dir={ROOT if instructor else home}"]
    if not instructor:  # also in lab/student/jupyter_server_config.json; the command line wins over sys-prefix
        cmd += [f"--ServerApp.jpserver_extensions={k}={v}" for k, v in STUDENT_EXTENSIONS.items()]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")
    return cmd + extra


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instructor", action="store_true", help="the instructor's lab (Formgrader)")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("LECTURE_AE_LAB_HOME", LAB / "work")),
                        help="the student's folder (default lab/work, or $LECTURE_AE_LAB_HOME)")
    parser.add_argument("--exchange", type=Path,
                        default=Path(os.environ.get("LECTURE_AE_EXCHANGE", LAB / "exchange")),
                        help="the nbgrader exchange (default lab/exchange, or $LECTURE_AE_EXCHANGE)")
    parser.add_argument("--no-release", action="store_true", help="do not release the assignments first")
    args, extra = parser.parse_known_args(argv)
    home, exchange = args.home.resolve(), args.exchange.resolve()
    if not args.instructor:
        home.mkdir(parents=True, exist_ok=True)
        if not args.no_release:
            release(exchange)
            print(f"released {', '.join(assignments())} to the exchange {exchange}", flush=True)
    cmd = lab_command(instructor=args.instructor, home=home, extra=extra)
    env = _env("instructor" if args.instructor else "student", exchange)
    cwd = ROOT if args.instructor else home
    os.chdir(cwd)
    os.execvpe(cmd[0], cmd, env)  # JupyterLab replaces this process (Ctrl-C stops it)
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
