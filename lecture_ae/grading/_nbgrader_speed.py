"""Two measured costs of nbgrader removed: a schema check per cell, and SQL compiled afresh per gradebook.

**The cell-metadata check.**

nbgrader's ``CheckCellMetadata`` (run by ``autograde`` once when it sanitises a submission and
twice more while it converts it) calls ``jsonschema.validate(cell_metadata, schema)`` for every
graded cell, and ``jsonschema.validate`` first checks the *schema* against the JSON Schema
meta-schema each time: most of the call. Measured on ps1 (18 graded cells, without a profiler):
one notebook check 10.8 ms, 1.7 ms with the validator kept, so about 27 ms of CPU per submission
(a tenth of what the Dask coordinator spends recording one; the first estimate, 0.16 s, was
read off cProfile, which inflates these small calls five-fold). The schema is
nbgrader's own constant file, so here each metadata validator (nbgrader makes one per notebook
check) checks it once and keeps its jsonschema validator; each cell's metadata is validated
exactly as before (same validator class, same ``best_match`` error, same version errors from
nbgrader's own code).

**The gradebook's SQL.** Every ``nbgrader.api.Gradebook`` makes its own SQLAlchemy engine
(``create_engine`` in its ``__init__``, ``dispose`` in its ``close``), and SQLAlchemy keeps the
compiled form of each statement in a cache *of the engine*: so every gradebook nbgrader opens
(about a dozen per autograded submission: the assignment's setup, each preprocessor that reads or writes
grades) compiled every query again. Measured on ps1 with py-spy in the Dask coordinator: SQL
compilation was about 30% of recording one submission. :func:`share_engines` makes
``nbgrader.api``'s ``create_engine`` return one engine per database URL (and process); the
gradebook's ``close`` still disposes it, so each gradebook still gets fresh connections (a
database file removed and made again is opened anew) and only the compiled statements are kept.
Recording one ps1 submission in the coordinator: median 0.28 -> 0.18 s.

:func:`install` is called where nbgrader runs in a grading process (``autograde.py``, imported by
the course's ``nbgrader_config.py`` and by the coordinator), so the serial ``nbgrader autograde``
and the Dask coordinator both get it.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

__all__ = ["install", "share_engines"]


def install() -> bool:
    """Both changes (idempotent); False where nbgrader does not look like the one they were written against."""
    return _cache_validators() & share_engines()


_ENGINES = 8  # engines kept per process: a coordinator or a formgrader uses one database, a test session many


def share_engines() -> bool:
    """One SQLAlchemy engine per (database URL, options, process) for ``nbgrader.api`` (idempotent)."""
    try:
        from nbgrader import api
    except ImportError:  # pragma: no cover - nbgrader is in the grading extra
        return False
    original = api.create_engine
    if getattr(original, "_lecture_ae", False):
        return True
    engines: OrderedDict = OrderedDict()  # the most recently used last; at most _ENGINES kept
    lock = threading.Lock()

    def create_engine(url, *args, **kwargs):
        try:
            key = (os.getpid(), str(url), args, tuple(sorted(kwargs.items())))
            hash(key)
        except TypeError:  # unhashable options: nbgrader's own behaviour
            return original(url, *args, **kwargs)
        with lock:
            engine = engines.get(key)
            if engine is None:
                engine = engines[key] = original(url, *args, **kwargs)
                while len(engines) > _ENGINES:  # (a gradebook still open keeps its own reference)
                    engines.popitem(last=False)
            engines.move_to_end(key)
        return engine

    create_engine._lecture_ae = True
    create_engine.__wrapped__ = original
    api.create_engine = create_engine
    return True


def _cache_validators() -> bool:
    """Replace ``BaseMetadataValidator.validate_cell`` by the cached-validator version (idempotent).

    Returns False (and changes nothing) when nbgrader's validator does not look like the one this
    was written against, so a future nbgrader keeps its own code.
    """
    try:
        import jsonschema
        from nbgrader.nbgraderformat import common
    except ImportError:  # pragma: no cover - nbgrader is in the grading extra
        return False
    base = common.BaseMetadataValidator
    original = base.validate_cell
    if getattr(original, "_lecture_ae", False):
        return True
    if not all(hasattr(base, name) for name in ("validate_nb", "upgrade_cell_metadata")):  # pragma: no cover
        return False

    def validate_cell(self, cell) -> None:
        if "nbgrader" not in cell.metadata:
            return
        meta = cell.metadata["nbgrader"]
        if meta.get("schema_version", 0) != self.schema_version:
            return original(self, cell)  # nbgrader's own SchemaTooOld / SchemaTooNew errors
        validator = self.__dict__.get("_lecture_ae_validator")
        if validator is None:  # what jsonschema.validate does on every call, once per metadata validator
            cls = jsonschema.validators.validator_for(self.schema)
            cls.check_schema(self.schema)
            validator = self.__dict__["_lecture_ae_validator"] = cls(self.schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(meta))
        if error is not None:
            raise error

    validate_cell._lecture_ae = True
    validate_cell.__wrapped__ = original
    validate_cell.__doc__ = original.__doc__
    base.validate_cell = validate_cell
    return True
