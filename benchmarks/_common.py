"""Helpers shared by the benchmark scripts (``run_all.py`` skips files whose name starts with ``_``)."""
from __future__ import annotations

import time


def best_time(fn, repeat=3):
    """Run ``fn()`` ``repeat`` times; return (the shortest wall-clock time, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def table(rows, cols):
    """Print a list of dicts as a plain-text table with the columns ``cols``."""
    widths = [max(len(c), *(len(f"{r[c]}") for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(f"{r[c]}".ljust(w) for c, w in zip(cols, widths)))
