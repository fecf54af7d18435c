"""Session-wide test configuration.

Test order: pytest-randomly (a test dependency) shuffles the order of the tests on every run,
with a seed it prints (``-p randomly -p "randomly_seed=N"`` repeats an order; ``-p no:randomly``
switches it off). Our tests do not depend on their order. The cells of a notebook do: nbval
runs them one after the other in one kernel. So after the shuffle each notebook's cells are
put back together, in their order in the notebook; the notebooks themselves stay shuffled
among the other tests.
"""
from __future__ import annotations

import random
import zlib

import pytest


def _notebook(item):
    """The notebook an nbval cell belongs to (None for other tests)."""
    if type(item).__name__ != "IPyNbCell":
        return None
    return str(item.fspath)


def pytest_collection_modifyitems(session, config, items):
    cells: dict[str, list] = {}
    for item in items:
        nb = _notebook(item)
        if nb is not None:
            cells.setdefault(nb, []).append(item)
    if not cells:
        return
    for group in cells.values():
        group.sort(key=lambda it: it.cell_num)
    reordered, placed = [], set()
    for item in items:
        nb = _notebook(item)
        if nb is None:
            reordered.append(item)
        elif nb not in placed:  # the whole notebook where its first (shuffled) cell stood
            placed.add(nb)
            reordered.extend(cells[nb])
    items[:] = reordered


@pytest.fixture(autouse=True)
def _seed_every_test(request):
    """Every test starts from the same random state, whatever ran before it on the same worker.

    Tests draw from their own seeded generators; this fixture makes a forgotten seed harmless:
    torch's, NumPy's and Python's global generators are seeded from the test's id (stable
    across runs, orders and workers).
    """
    seed = zlib.crc32(request.node.nodeid.encode()) & 0x7FFFFFFF
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None
    if np is not None:
        np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None:
        torch.manual_seed(seed)
    yield
