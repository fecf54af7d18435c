"""Grading: the checks behind the autograder cells, and the nbgrader pipeline around them.

Modules
-------
:mod:`~lecture_ae.grading.checks`
    The generic framework.  :func:`~lecture_ae.grading.checks.check_function` calls a
    student's function on a list of :class:`~lecture_ae.grading.checks.Case` inputs,
    compares every result with the reference and raises
    :class:`~lecture_ae.grading.checks.CheckFailed` (an ``AssertionError``: nbgrader
    gives the cell zero points) with a message for the student: the input, the expected
    and the obtained result, where they differ and, when the result matches one of the
    known wrong implementations (:class:`~lecture_ae.grading.checks.Mistake`), the
    likely mistake.  Exceptions, time-outs (infinite loops), in-place changes of the
    inputs, wrong types/shapes and NaN are reported the same way; stdout, stderr and
    warnings of the student's code are captured (nbgrader zeroes a test cell that writes
    to stderr).
:mod:`~lecture_ae.grading.guard`
    :class:`~lecture_ae.grading.guard.ReferenceGuard` blocks every function of
    ``lecture_ae`` (except the framework and ``runtime``) while the student's function
    runs: a student who calls the reference scores zero for that part, with a message.
:mod:`~lecture_ae.grading.pipeline`
    Runs the real ``nbgrader`` command line (generate_assignment, autograde,
    generate_feedback, export) on an assignment in a temporary course folder and returns
    per-student, per-cell scores, the cells' output and the feedback text.  The
    end-to-end tests and ``benchmarks/grading_speed.py`` use it.
:mod:`~lecture_ae.grading.ps1`
    The checks of problem set 1 (sparse coding).
:mod:`~lecture_ae.grading.ps2`
    The checks of problem set 2 (autoencoders).
:mod:`~lecture_ae.grading.ps3`
    The checks of problem set 3 (shortcut connections and U-Net).
:mod:`~lecture_ae.grading.ps4`
    The checks of problem set 4 (anomaly detection).

Adding an assignment (ps2, ps3, ...)
------------------------------------
1. ``lecture_ae/grading/psN.py``: one ``check_<function>(fn, *, seeds=(0,), ..., edge_cases=False)``
   per function the students write.  Build the :class:`~lecture_ae.grading.checks.Case`
   list from the seeds (float64 tensors), wrap the reference in a small ``_ref_<function>``
   with exactly the students' signature, list the typical wrong implementations as
   :class:`~lecture_ae.grading.checks.Mistake` and call
   :func:`~lecture_ae.grading.checks.check_function` (pick ``tensor_close`` /
   ``scalar_close`` / ``tuple_close`` tolerances, or write a comparator
   ``compare(got, expected, what) -> None | str``).  A class the students write (an
   ``nn.Module``) is checked through a small function that builds it with fixed weights
   and calls it.  The check must return ``None``: a number shown by an autograder cell
   is read by nbgrader as partial credit.  When the student's function receives a
   reference object it may use (a reference model, a dataset), pass
   ``allow=DEFAULT_ALLOWED + ("lecture_ae.models.unet.UNet",)``; arguments it may change
   in place go into ``Case(may_mutate=...)``.  Checks that train take ``limit=`` seconds.
2. ``solutions/psN_<topic>/psN_<topic>.ipynb``: the nbgrader source.  Solution cells
   (``### BEGIN SOLUTION`` / ``### END SOLUTION``), one autograder cell per function with
   points, importing its check in the cell itself, a visible call with the defaults and
   a hidden call (``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``) with other seeds,
   shapes and ``edge_cases=True``; manually graded answers are solution cells with points.
   Only notebooks (and data) go in that folder: ``*.py`` files and a ``lecture_ae`` folder
   are never copied (``c.CourseDirectory.ignore`` in ``nbgrader_config.py``), so code
   reaches students only through the installed package.
3. ``make release ASSIGNMENT=psN_<topic>`` writes ``exercises/psN_<topic>/``; commit it.
4. Tests: ``tests/test_grading_psN.py`` unit-tests the checks with right and wrong
   functions; ``tests/test_nbgrader_psN.py`` calls
   :func:`~lecture_ae.grading.pipeline.grade_submissions` with a few students
   (``fill_from_source`` for the solution, ``replace_solution(grade_id, code, base=...)``
   for wrong ones) and uses the helpers of ``tests/nbgrader_harness.py`` (release drift,
   full marks, zero for the release).
"""
import importlib

_EXPORTS = {
    "checks": ["Case", "Check", "CheckFailed", "CheckTimeout", "Context", "Mistake", "call_student", "check_function",
               "compare_scalars", "compare_tensors", "describe", "scalar_close", "tensor_close", "time_limit",
               "tuple_close"],
    "guard": ["DEFAULT_ALLOWED", "DEFAULT_GUARDED", "ReferenceGuard", "ReferenceUsedError"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name: str):
    # loaded on first use: the trusted grader's sandboxed child imports this package with only
    # guard.py, _child.py, _wire.py and _launch.py of it on its file system
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'lecture_ae.grading' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
