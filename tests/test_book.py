"""The real `jupyter-book build`, with warnings as errors, executes every chapter."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_book_builds_with_warnings_as_errors(tmp_path):
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    env = dict(os.environ, LECTURE_AE_PROGRESS="0")
    env.pop("MPLBACKEND", None)  # with MPLBACKEND=Agg the kernels keep their figures to themselves
    proc = subprocess.run(
        [jb, "build", str(ROOT), "--path-output", str(tmp_path), "--warningiserror", "--nitpick", "--keep-going"],
        capture_output=True, text=True, env=env, timeout=1800,
    )
    assert proc.returncode == 0, f"jupyter-book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    html = tmp_path / "_build" / "html"
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for chapter in [ch["file"] for part in toc["parts"] for ch in part["chapters"]]:
        page = html / f"{chapter}.html"
        assert page.exists(), f"{page} was not built"
        text = page.read_text()
        if (ROOT / f"{chapter}.ipynb").exists():
            assert "<img" in text, f"{chapter}: an executed chapter should show its figures"
        # math renders offline: MathJax comes from the book's _static (book/_ext/offline_mathjax.py)
        mathjax = re.findall(r'<script[^>]*\bsrc="([^"]*mathjax[^"]*)"', text, flags=re.IGNORECASE)
        assert not [src for src in mathjax if "://" in src], f"{chapter}: MathJax loaded from a URL: {mathjax}"
        if 'class="math' in text:
            assert mathjax, f"{chapter}: the page has math but loads no MathJax"
            for src in mathjax:
                assert (page.parent / src.split("?")[0]).is_file(), f"{chapter}: {src} is not in the book"
    assert "Traceback" not in (html / "book" / "sparse_coding.html").read_text()
