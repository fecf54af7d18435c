"""Run every benchmark in this folder, one after the other, printing their tables.

``make bench`` calls this.  Benchmarks are not tests: they time things and print
ratios against scikit-learn and other libraries, measured in the same run.
"""
import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
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
