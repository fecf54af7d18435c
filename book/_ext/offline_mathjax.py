"""Serve MathJax from the book itself, so that its math renders without internet.

Sphinx loads MathJax 3 from a CDN by default: a reader offline would see raw TeX.
This extension copies MathJax 3 (the ``es5`` build, from the pip package
``django-static-mathjax``, installed by the ``book`` extra) into ``_static/mathjax``
of the HTML output and points ``mathjax_path`` at that copy.  Nothing is downloaded.

It is the same MathJax (3.2) that Sphinx would load from the CDN, so the
``mathjax3_config`` that myst-parser sets for dollar math works unchanged.  Only
the parts ``tex-mml-chtml.js`` can load are copied: the TeX and MathML inputs'
extensions, the CommonHTML fonts, the menu and the accessibility modules
(about 7 MB).
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

SCRIPT = "tex-mml-chtml.js"
#: Everything under ``es5/`` that ``tex-mml-chtml.js`` loads by itself or on demand.
PARTS = (
    SCRIPT,
    "input/tex/extensions",
    "input/mml",
    "output/chtml/fonts/woff-v2",
    "a11y",
    "ui",
    "sre",
)
TARGET = "mathjax"  # folder under the output's _static


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax 3 copy."""
    spec = importlib.util.find_spec("mathjax")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        es5 = Path(location) / "static" / "mathjax" / "es5"
        if (es5 / SCRIPT).is_file():
            return es5
    raise ExtensionError(
        "offline_mathjax: MathJax 3 was not found; install the book's dependencies "
        "(`pip install -e '.[book]'`, which brings django-static-mathjax)"
    )


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.is_file():
        s, d = src.stat(), dst.stat()
        if s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime):
            return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def copy_mathjax(es5: Path, static_dir: Path) -> Path:
    """Copy the parts of MathJax the book needs into ``static_dir/mathjax``; return it."""
    target = static_dir / TARGET
    for part in PARTS:
        src = es5 / part
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            _copy_if_changed(f, target / f.relative_to(es5))
    licence = es5.parent / "LICENSE"
    if licence.is_file():
        _copy_if_changed(licence, target / "LICENSE")
    return target


def _set_path(app: Sphinx, config: Config) -> None:
    config.mathjax_path = f"{TARGET}/{SCRIPT}"  # relative: served from _static/


def _install(app: Sphinx) -> None:
    # Before the pages are written, so that Sphinx adds the script's checksum (?v=...).
    if app.builder.format != "html":
        return
    copy_mathjax(mathjax_source(), Path(app.outdir) / "_static")


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _set_path)
    app.connect("builder-inited", _install)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
