"""Run every benchmark in this folder, one after the other, printing their tables.

``make bench`` calls this.  Benchmarks are not tests: they time things and print
ratios against scikit-learn and other libraries, measured in the same run.

Every ``*.py`` here except this file (and ``_*.py`` helpers) is run, in name order:

* ``csc_vs_sporco.py``: convolutional sparse coding and filter learning against SPORCO
  (``ConvBPDN``, ``ConvBPDNDictLearn``), one thread for every library by default;
* ``dl_vs_spams.py``: patch dictionary learning and sparse coding against SPAMS
  (``trainDL``, ``lasso``; the ``bench`` extra) and scikit-learn, one thread by default;
* ``grading_speed.py``, ``sparse_vs_sklearn.py``: see their docstrings.

A benchmark that changes torch's thread count restores it before it returns.
"""
import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    sys.path.insert(0, str(HERE))  # the scripts import benchmarks/_common.py as a sibling module
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    failed = []
    for script in scripts:
        print(f"\n{'=' * 100}\n# {script.name}\n{'=' * 100}", flush=True)
        t0 = time.perf_counter()
        try:
            sys.argv = [str(script)]
            runpy.run_path(str(script), run_name="__main__")
        except Exception as exc:  # keep going: one broken benchmark should not hide the others
            failed.append(script.name)
            print(f"!! {script.name} failed: {exc!r}")
        print(f"({script.name}: {time.perf_counter() - t0:.0f} s)")
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
