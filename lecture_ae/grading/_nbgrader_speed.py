"""One measured cost of nbgrader removed: its cell-metadata check validated the schema itself per cell.

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

:func:`install` is called where nbgrader runs in a grading process (``autograde.py``, imported by
the course's ``nbgrader_config.py`` and by the coordinator), so the serial ``nbgrader autograde``
and the Dask coordinator both get it.
"""
from __future__ import annotations

__all__ = ["install"]


def install() -> bool:
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
