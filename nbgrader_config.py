"""nbgrader configuration of the course (read by every `nbgrader` command run from this folder).

Layout (the course root is the folder of this file):

    solutions/<assignment>/      nbgrader source: solutions + hidden tests (instructors only)
    exercises/<assignment>/      the student version, made by `make release`
    grading/                     git-ignored: everything with student data
        submitted/<student>/<assignment>/   the notebooks students handed in
        autograded/ feedback/               made by `make autograde` / `make feedback`
        gradebook.db                        SQLite gradebook (default)
        grades.csv                          `make grades`

Environment variables:
    NBGRADER_DB_URL            gradebook URL, e.g. postgresql://grader@dbhost/lecture_ae
                               (several graders; the driver psycopg comes with the grading extra)
    NBGRADER_EXECUTE_TIMEOUT   seconds one cell may run during autograding (default 120)
"""
import os

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

_root = os.path.dirname(os.path.abspath(__file__))
_grading = os.path.join(_root, "grading")

c.CourseDirectory.root = _root
c.CourseDirectory.course_id = "lecture_ae"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = os.path.join("grading", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("grading", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("grading", "feedback")
c.CourseDirectory.solution_directory = os.path.join("grading", "solution")
if os.environ.get("NBGRADER_DB_URL"):
    c.CourseDirectory.db_url = os.environ["NBGRADER_DB_URL"]
else:
    c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_grading, "gradebook.db")
    os.makedirs(_grading, exist_ok=True)  # SQLite creates the file, not its folder

# Files that are never copied (source -> release, submission -> autograded, source -> autograded).
# nbgrader copies every non-notebook file of a submission next to the notebook it executes, and the
# kernel imports from that folder first: a submitted `lecture_ae/` package or `torch.py` would shadow
# the real ones (and the checks).  Code therefore never travels as files: the reference and the
# checks live in the installed package `lecture_ae`; solutions/<assignment>/ holds notebooks (and data).
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "__pycache__",
    "feedback",
    "*.py",
    "*.pyc",
    "*.pyo",
    "*.pyd",
    "*.so",
    "*.pth",
    "lecture_ae",
]

# The exclude_overwriting pitfall: before executing a submission, `nbgrader autograde` copies every
# non-notebook file of solutions/<assignment>/ over the submission (so students cannot tamper with
# provided files), except those listed here; `generate_assignment` copies the same files into the
# release.  A reference or helper .py kept there would be handed to students; so it is kept empty,
# code lives in the package, and the ignore list above keeps *.py out of every copy.
c.Autograde.exclude_overwriting = {}

# The option nbgrader 0.9.6 honours: its Execute preprocessor (nbgrader/preprocessors/execute.py)
# redefines `timeout` (default 30 s); our TrustedExecute below inherits it: a cell of the kernel pass
# that runs longer is stopped (the kernel is started again) and the remaining cells still run.
c.Execute.timeout = int(os.environ.get("NBGRADER_EXECUTE_TIMEOUT", "120"))
c.Execute.interrupt_on_timeout = True

# Trusted autograding (lecture_ae/grading/autograde.py): nbgrader's Execute step is replaced. The
# notebook runs in a sandboxed kernel (bubblewrap: no course folder, no gradebook, no network) with
# the hidden tests removed, for the outputs and plots; the scores come from the trusted grader, which
# runs the source's test cells (hidden parts included) in nbgrader's own process against the
# student's functions answering from a second sandboxed process. SaveAutoGrades then records those
# scores as usual. Without bubblewrap, grading stops with the command to install it, unless
# LECTURE_AE_NO_SANDBOX=1 (no isolation: every file the instructor can read is readable).
c.Autograde.autograde_preprocessors = [
    "lecture_ae.grading.autograde.TrustedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.TrustedExecute.report_directory = os.path.join("grading", "trusted")

# grades.csv goes under grading/ (git-ignored) as well.
c.CsvExportPlugin.to = os.path.join(_grading, "grades.csv")
