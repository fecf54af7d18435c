"""Execute the book's notebooks in parallel, into the execution cache the build reads.

MyST-NB executes the notebooks of a build one after the other, while Sphinx reads them
(jupyter-book #1735).  With ``execute_notebooks: cache`` every executed notebook is stored in
a jupyter-cache folder (``_build/.jupyter_cache``) keyed by the hash of its code cells, and
the build only reads it back.  This extension fills that cache *before* Sphinx reads the
sources: every notebook that is about to be read and has no cached execution is executed by
its own kernel, as many at a time as there are cores (``LECTURE_AE_BOOK_JOBS`` overrides),
the longest first when an earlier run recorded how long each took.  Sphinx then finds every
notebook in the cache, exactly as on a second build.

Each kernel runs exactly as MyST-NB would run it: nbclient, the notebook's folder as working
directory, the ``execute`` settings of ``_config.yml`` (timeout, allow_errors).  With more
than one kernel at a time each gets one BLAS/OpenMP thread (unless the variables are set
already): two kernels with two threads each on two cores run several times slower.

A notebook that fails here is not cached; MyST-NB then executes it once more itself and
reports the error with its traceback, as without this extension.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path, PurePosixPath

import nbformat
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Environment variable: how many kernels run at once (default: the cores this process may use).
JOBS_VARIABLE = "LECTURE_AE_BOOK_JOBS"
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def default_jobs() -> int:
    """Kernels at once: ``$LECTURE_AE_BOOK_JOBS`` or the number of usable cores."""
    value = os.environ.get(JOBS_VARIABLE, "").strip()
    if value:
        try:
            jobs = int(value)
        except ValueError:
            raise ValueError(f"{JOBS_VARIABLE} must be a positive integer; got {value!r}") from None
        if jobs < 1:
            raise ValueError(f"{JOBS_VARIABLE} must be a positive integer; got {value!r}")
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _excluded(path: Path, patterns) -> bool:
    posix = PurePosixPath(path.as_posix())
    return any(posix.match(p) for p in patterns or ())


def _previous_seconds(cache) -> dict[str, float]:
    """Execution time of the last cached run of every notebook (by path), if any."""
    seconds: dict[str, float] = {}
    for record in cache.list_cache_records():
        value = (record.data or {}).get("execution_seconds")
        if value is not None:
            seconds[record.uri] = float(value)
    return seconds


def _kernel_env(jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    if jobs > 1:
        for name in THREAD_VARIABLES:
            env.setdefault(name, "1")
    return env


def _execute(nb, cwd: str, timeout, allow_errors: bool, env: dict[str, str]):
    """Run one notebook in a fresh kernel (MyST-NB's settings); return (notebook, seconds, error)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    if "execution" in nb.metadata:  # as jupyter-cache's single_nb_execution(meta_override=True)
        timeout = nb.metadata.execution.get("timeout", timeout)
        allow_errors = nb.metadata.execution.get("allow_errors", allow_errors)
    # record_timing=False: no timestamps in the cell metadata, which jupyter-cache hashes
    client = NotebookClient(
        nb,
        timeout=timeout,
        allow_errors=allow_errors,
        record_timing=False,
        resources={"metadata": {"path": cwd}},
    )
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError) as err:
        return nb, time.perf_counter() - start, err
    return nb, time.perf_counter() - start, None


def execute_missing(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """``env-before-read-docs``: execute every notebook to be read that the cache lacks."""
    config = env.mystnb_config if hasattr(env, "mystnb_config") else None
    if config is None or config.execution_mode != "cache" or app.builder.format != "html":
        return
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(config.execution_cache_path)
    todo = []
    for docname in docnames:
        path = Path(env.doc2path(docname))
        if path.suffix != ".ipynb" or _excluded(path, config.execution_excludepatterns):
            continue
        nb = nbformat.read(path, as_version=4)
        try:
            cache.match_cache_notebook(nb)
        except KeyError:
            todo.append((path, nb))
    if not todo:
        return
    jobs = min(default_jobs(), len(todo))
    previous = _previous_seconds(cache)
    todo.sort(key=lambda item: -previous.get(str(item[0]), 0.0))  # longest first (stable otherwise)
    logger.info(f"[parallel_execution] executing {len(todo)} notebook(s), {jobs} kernel(s) at a time")
    kernel_env = _kernel_env(jobs)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="nb-exec") as pool:
        futures = {
            pool.submit(
                _execute,
                nb,
                str(path.parent),
                config.execution_timeout,
                config.execution_allow_errors,
                kernel_env,
            ): path
            for path, nb in todo
        }
        for future in as_completed(futures):
            path = futures[future]
            try:
                nb, seconds, error = future.result()
            except Exception as exc:  # kernel died, could not start, ...: MyST-NB retries and reports
                logger.info(f"[parallel_execution] {path.name}: {type(exc).__name__}: {exc}; left to MyST-NB")
                continue
            if error is not None:
                logger.info(
                    f"[parallel_execution] {path.name} failed ({type(error).__name__}); "
                    "left to MyST-NB, which reports it"
                )
                continue
            cache.add_nb_to_project(str(path))
            cache.cache_notebook_bundle(
                CacheBundleIn(nb, str(path), data={"execution_seconds": seconds}),
                check_validity=False,
                overwrite=True,
            )
            logger.info(f"[parallel_execution] {path.name}: executed in {seconds:.1f} s, cached")
    logger.info(f"[parallel_execution] all done in {time.perf_counter() - start:.1f} s")


def setup(app: Sphinx) -> dict:
    # After MyST-NB has set up its configuration (its own builder-inited handler).
    app.connect("env-before-read-docs", execute_missing, priority=400)
    return {
        "version": "1.0",
        "parallel_read_safe": True,
        "parallel_write_safe": True,
    }
