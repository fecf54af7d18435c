"""The course's additions to Jupyter Book: what readers and students get from each page.

* **Executed notebooks for download.**  The download button of a chapter offers
  ``_sources/<chapter>.ipynb``; Sphinx copies the committed notebook there, which has no
  outputs.  After the build that copy is replaced by the executed notebook: the chapter with
  the outputs of its execution, from the execution cache the build read.
* **An optional JupyterHub launch button.**  With ``LECTURE_AE_JUPYTERHUB_URL`` set at build
  time, every chapter gets the theme's JupyterHub button: an nbgitpuller link that clones (or
  updates) the course repository into the student's hub account and opens the chapter in
  JupyterLab.  The repository is ``LECTURE_AE_REPOSITORY_URL`` (default: git's ``origin``),
  the branch ``LECTURE_AE_REPOSITORY_BRANCH`` (default ``main``).  Unset: no button.
* **Author-year bibliography labels.**  The text cites author-year, "(Lee et al., 2006)";
  the bibliography's labels are the same ("[Lee et al., 2006]") instead of pybtex's alpha
  labels ("[LBRN06]"): ``bibtex_default_style = "authoryear"``.
* **No console errors.**  sphinx-thebe adds its configuration script twice, and the second
  ``const THEBE_JS_URL`` is a SyntaxError in every page; duplicate scripts are dropped.  The
  theme's colour mode defaults to ``light`` (``html_context["default_mode"]``; left empty,
  the theme's script reports "Got invalid theme mode" as an error).
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import nbformat
import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import (
    SortingStyle as AuthorYearTitleSorting,
)
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError
from sphinx.util import logging

logger = logging.getLogger(__name__)

HUB_VARIABLE = "LECTURE_AE_JUPYTERHUB_URL"
REPOSITORY_VARIABLE = "LECTURE_AE_REPOSITORY_URL"
BRANCH_VARIABLE = "LECTURE_AE_REPOSITORY_BRANCH"


# --------------------------------------------------------------------------- bibliography
def _plain(latex: str) -> str:
    return Text.from_latex(latex).render_as("text")


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Baldi and Hornik, 1989", "Lee et al., 2006", as the in-text author-year citations.

    Equal labels get a, b, ... after the year, in the order of the bibliography.
    """

    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
        if not names:
            who = _plain(entry.fields.get("title", entry.key))
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        year = _plain(entry.fields.get("year", "n.d."))
        return f"{who}, {year}"

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        counts, seen = Counter(labels), defaultdict(int)
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                label = f"{label}{chr(ord('a') + seen[label] - 1)}"
            yield label


class AuthorYearStyle(UnsrtStyle):
    """pybtex's unsrt entries, sorted by author, year and title, with author-year labels."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = AuthorYearTitleSorting


def _register_bibliography_style() -> None:
    pybtex.plugin.register_plugin(
        "pybtex.style.formatting",
        "authoryear",
        AuthorYearStyle,
        force=True,
    )


# --------------------------------------------------------------------------- configuration
def _origin_url(srcdir: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", srcdir, "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    url = out.stdout.strip() if out.returncode == 0 else ""
    if url.startswith("git@") and ":" in url:  # git@github.com:org/repo.git -> https://github.com/org/repo
        host, path = url[4:].split(":", 1)
        url = f"https://{host}/{path}"
    return url.removesuffix(".git")


def launch_options(environ, srcdir: str) -> dict:
    """The theme options that the launch button needs, from the environment (empty when unset)."""
    hub = environ.get(HUB_VARIABLE, "").strip()
    if not hub:
        return {}
    if not hub.startswith(("https://", "http://")):
        raise ConfigError(f"{HUB_VARIABLE} must be the hub's URL, e.g. https://hub.example.org; got {hub!r}")
    repo = environ.get(REPOSITORY_VARIABLE, "").strip() or _origin_url(srcdir)
    if not repo.startswith(("https://", "http://")):
        raise ConfigError(
            f"{HUB_VARIABLE} is set, so the chapters link to the hub through nbgitpuller, which clones "
            f"the course repository: set {REPOSITORY_VARIABLE} to its https URL "
            f"(e.g. https://github.com/org/lecture-ae); got {repo!r}"
        )
    branch = environ.get(BRANCH_VARIABLE, "").strip() or "main"
    return {
        "jupyterhub_url": hub.rstrip("/"),
        "repository_url": repo.rstrip("/"),
        "repository_branch": branch,
    }


def _configure(app: Sphinx, config: Config) -> None:
    options = config.html_theme_options
    config.html_context.setdefault("default_mode", "light")  # pydata-sphinx-theme reads it from the context
    launch = launch_options(os.environ, str(app.srcdir))
    buttons = options.setdefault("launch_buttons", {})
    if launch:
        buttons["jupyterhub_url"] = launch["jupyterhub_url"]
        options["repository_url"] = launch["repository_url"]
        options["repository_branch"] = launch["repository_branch"]
        logger.info(
            f"[course_book] JupyterHub launch links to {launch['jupyterhub_url']} "
            f"({launch['repository_url']}, branch {launch['repository_branch']})"
        )
    else:
        buttons.pop("jupyterhub_url", None)


# --------------------------------------------------------------------------- pages
def _drop_duplicate_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in sorted(scripts, key=lambda js: getattr(js, "priority", 500)):
        # an inline script is registered once with filename None and once with "" (same script)
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    scripts[:] = kept  # in place: the builder restores its own list before the next page


def executed_notebook(app: Sphinx, docname: str):
    """The chapter's notebook with the outputs of its execution, or None.

    With ``execute_notebooks: cache`` the outputs come from the execution cache (on a cache hit
    MyST-NB writes the notebook to ``jupyter_execute/`` without them); otherwise from the
    notebook MyST-NB wrote to ``jupyter_execute/``.
    """
    source = Path(app.env.doc2path(docname))
    config = getattr(app.env, "mystnb_config", None)
    if config is not None and config.execution_mode == "cache":
        from jupyter_cache import get_cache

        try:
            _, merged = get_cache(config.execution_cache_path).merge_match_into_notebook(
                nbformat.read(source, as_version=4))
            return merged
        except KeyError:
            pass
    written = Path(app.outdir).parent / "jupyter_execute" / f"{docname}.ipynb"
    if written.is_file():
        nb = nbformat.read(written, as_version=4)
        if any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            return nb
    return None


def _offer_executed_notebooks(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    offered = 0
    for docname in sorted(app.env.found_docs):
        if not str(app.env.doc2path(docname)).endswith(".ipynb"):
            continue
        target = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
        nb = executed_notebook(app, docname) if target.is_file() else None
        if nb is not None:
            nbformat.write(nb, target)
            offered += 1
    logger.info(f"[course_book] {offered} executed notebook(s) offered for download")


def setup(app: Sphinx) -> dict:
    _register_bibliography_style()
    app.connect("config-inited", _configure)
    # First: html-page-context stops at the first handler that returns a template name; the
    # scripts are all registered before any page is written (the builder's list, reset per page).
    app.connect("html-page-context", _drop_duplicate_scripts, priority=1)
    app.connect("build-finished", _offer_executed_notebooks)
    return {
        "version": "1.0",
        "parallel_read_safe": True,
        "parallel_write_safe": True,
    }
