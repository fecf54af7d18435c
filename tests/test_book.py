"""The book: the real `jupyter-book build` (warnings are errors), then every page in headless Chromium.

The book is built once per test session, by the module-scoped fixture ``book`` (pytest-xdist
runs this file's tests on one worker, ``--dist loadfile``).  The browser tests serve the built
HTML on 127.0.0.1 and open every page in a 1280 px wide window, as a reader would: every image
loads, MathJax typesets every formula without error, the console stays free of errors, no
request leaves the book, nothing is wider than its column (code, formulas, tables, figures),
every figure is numbered and captioned, search shows text snippets, and the download and
assignment links resolve.  Each page's screenshot is written to a folder that every failure
names.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import course_book  # noqa: E402  (book/_ext/course_book.py)
from browser_harness import (  # noqa: E402
    chromium,
    console_errors,
    external,
    full_page_screenshot,
    requested_urls,
    serve_directory,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
JB = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [ch["file"] for part in TOC["parts"] for ch in part["chapters"]]
NOTEBOOKS = [c for c in CHAPTERS if (ROOT / f"{c}.ipynb").exists()]
PAGES = [TOC["root"], *CHAPTERS]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir())


def _build_env() -> dict:
    env = dict(os.environ, LECTURE_AE_PROGRESS="0")
    env.pop("MPLBACKEND", None)  # with MPLBACKEND=Agg the kernels keep their figures to themselves
    env.pop(course_book.HUB_VARIABLE, None)  # the book as `make book` builds it: no hub button
    return env


def _jupyter_book(source: Path, out: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [JB, "build", str(source), "--path-output", str(out), "--warningiserror", "--nitpick", "--keep-going"],
        capture_output=True, text=True, env=env, timeout=timeout,
    )


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """The book, built once for this module: the path of its HTML."""
    out = tmp_path_factory.mktemp("book")
    proc = _jupyter_book(ROOT, out, _build_env(), timeout=1800)
    assert proc.returncode == 0, f"jupyter-book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return out / "_build" / "html"


# ------------------------------------------------------------------------------------ the build
def test_book_builds_with_warnings_as_errors(book):
    html = book
    for chapter in PAGES:
        page = html / f"{chapter}.html"
        assert page.exists(), f"{page} was not built"
        text = page.read_text()
        if chapter in NOTEBOOKS:
            assert "<img" in text, f"{chapter}: an executed chapter should show its figures"
        # math renders offline: MathJax comes from the book's _static (book/_ext/offline_mathjax.py)
        mathjax = re.findall(r'<script[^>]*\bsrc="([^"]*mathjax[^"]*)"', text, flags=re.IGNORECASE)
        assert not [src for src in mathjax if "://" in src], f"{chapter}: MathJax loaded from a URL: {mathjax}"
        if 'class="math' in text:
            assert mathjax, f"{chapter}: the page has math but loads no MathJax"
            for src in mathjax:
                assert (page.parent / src.split("?")[0]).is_file(), f"{chapter}: {src} is not in the book"
        assert "THEBE_JS_URL" not in text or text.count("const THEBE_JS_URL") == 1, f"{chapter}: duplicate thebe config"
        # no hub configured: no launch button (the button appears with LECTURE_AE_JUPYTERHUB_URL)
        assert "launch-buttons" not in text, f"{chapter}: a launch button without a configured hub"
    assert "Traceback" not in (html / "book" / "sparse_coding.html").read_text()


def test_chapters_offer_their_executed_notebook(book):
    for chapter in NOTEBOOKS:
        page = (book / f"{chapter}.html").read_text()
        name = Path(chapter).name
        assert f'_sources/{chapter}.ipynb"' in page, f"{chapter}: no download of the notebook"
        nb = nbformat.read(book / "_sources" / f"{chapter}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.get("execution_count") for c in code), f"{name}: the download is not executed"
        assert any(o.get("output_type") == "display_data" for c in code for o in c.outputs), \
            f"{name}: the downloaded notebook has no figures"


def test_bibliography_labels_are_author_year(book):
    text = (book / "book" / "bibliography.html").read_text()
    labels = re.findall(r'<span class="label"><span class="fn-bracket">\[</span>([^<]*)<', text)
    assert labels, "no bibliography entries"
    bad = [label for label in labels if not re.fullmatch(r"[^,]+, \d{4}[a-z]?", label)]
    assert not bad, f"bibliography labels not in author-year form: {bad}"
    assert "Lee et al., 2006" in labels and "Olshausen and Field, 1996" in labels
    # the text cites the same way
    assert "Olshausen and Field, 1996" in (book / "book" / "sparse_coding.html").read_text()


def _release_points(assignment: str) -> tuple[int, int, list[int]]:
    nb = nbformat.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    auto = manual = 0
    parts = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            points = int(meta["points"])
            parts.append(points)
            if meta.get("solution") or meta.get("task"):
                manual += points
            else:
                auto += points
    return auto, manual, parts


def test_assignments_page_matches_the_release(book):
    page = book / "book" / "assignments.html"
    text = page.read_text()
    source = (ROOT / "book" / "assignments.md").read_text()
    for assignment in ASSIGNMENTS:
        auto, manual, parts = _release_points(assignment)
        number = assignment[2]
        assert f"{auto} autograded + {manual} by hand" in source, \
            f"book/assignments.md: {assignment} should say '{auto} autograded + {manual} by hand'"
        section = source.split(f"(ps{number})=")[1].split("\n(ps")[0]
        table = [int(m) for m in re.findall(r"^\| \d+ \|.*\| (\d+) \|$", section, flags=re.MULTILINE)]
        assert table == parts, f"book/assignments.md: the points of {assignment}'s parts are {parts}, not {table}"
        links = set(re.findall(rf'href="(\.\./_downloads/[0-9a-f]+/{assignment}\.ipynb)"', text))
        assert len(links) == 1, f"{assignment}: expected one download link on the assignments page, got {links}"
        download = (page.parent / links.pop()).resolve()
        release = ROOT / "exercises" / assignment / f"{assignment}.ipynb"
        assert download.read_bytes() == release.read_bytes(), f"{assignment}: the download is not the release"


def test_chapter_code_is_formatted_for_the_column():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    proc = subprocess.run([ruff, "format", "--check", "--diff", str(ROOT / "book")], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, f"run `ruff format book/` (line length from book/ruff.toml):\n{proc.stdout[-4000:]}"
    limit = int(re.search(r"^line-length\s*=\s*(\d+)", (ROOT / "book" / "ruff.toml").read_text(), re.M).group(1))
    long = []
    for chapter in NOTEBOOKS:
        nb = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                long += [f"{chapter}: {line}" for line in cell.source.splitlines() if len(line) > limit]
    assert not long, f"code lines longer than {limit} characters (split strings and comments):\n" + "\n".join(long)


def test_committed_chapters_have_no_outputs():
    for chapter in NOTEBOOKS:
        nb = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
        dirty = [c.id for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{chapter}: commit the notebook without outputs (cells {dirty})"


# ---------------------------------------------------------------------- the hub launch button
def test_launch_options_from_the_environment():
    assert course_book.launch_options({}, str(ROOT)) == {}
    env = {course_book.HUB_VARIABLE: "https://hub.example.org/", course_book.REPOSITORY_VARIABLE:
           "https://github.com/example/lecture-ae", course_book.BRANCH_VARIABLE: "ws2026"}
    assert course_book.launch_options(env, str(ROOT)) == {
        "jupyterhub_url": "https://hub.example.org", "repository_url": "https://github.com/example/lecture-ae",
        "repository_branch": "ws2026"}
    with pytest.raises(Exception, match="must be the hub's URL"):
        course_book.launch_options({course_book.HUB_VARIABLE: "hub.example.org"}, str(ROOT))
    with pytest.raises(Exception, match=course_book.REPOSITORY_VARIABLE):
        course_book.launch_options({course_book.HUB_VARIABLE: "https://hub.example.org",
                                    course_book.REPOSITORY_VARIABLE: "git@host:path"}, str(ROOT / "book"))


def test_hub_launch_button_is_an_nbgitpuller_link(tmp_path):
    """A one-page book with the course's extensions and LECTURE_AE_JUPYTERHUB_URL set (no execution)."""
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A chapter"),
                                         nbformat.v4.new_code_cell("1 + 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src / "book" / "chapter.ipynb")
    (src / "_toc.yml").write_text("format: jb-book\nroot: book/chapter\n")
    (src / "_config.yml").write_text(yaml.safe_dump({
        "title": "t", "execute": {"execute_notebooks": "off"},
        "launch_buttons": {"notebook_interface": "jupyterlab"},
        "sphinx": {"local_extensions": {"course_book": str(ROOT / "book" / "_ext")}},
    }))
    env = dict(_build_env(), **{course_book.HUB_VARIABLE: "https://hub.example.org",
                                course_book.REPOSITORY_VARIABLE: "https://github.com/example/lecture-ae"})
    proc = _jupyter_book(src, tmp_path / "out", env, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    page = (tmp_path / "out" / "_build" / "html" / "book" / "chapter.html").read_text()
    links = set(re.findall(r'href="(https://hub\.example\.org/[^"]*)"', page))
    assert links == {"https://hub.example.org/hub/user-redirect/git-pull?repo=https%3A//github.com/example/lecture-ae"
                     "&urlpath=lab/tree/lecture-ae/book/chapter.ipynb&branch=main"}, links


# ------------------------------------------------------------------------------ in the browser
#: Runs in every page once it has loaded: waits for the images and for MathJax, opens every
#: collapsed block (hidden code, solutions), then measures.  Calls back with a report.
PAGE_REPORT_JS = r"""
const done = arguments[arguments.length - 1];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(pred, ms) { const t0 = Date.now(); while (!pred()) { if (Date.now() - t0 > ms) return false; await sleep(50); } return true; }
(async () => {
  const r = {};
  const imgs = [...document.querySelectorAll("img")];
  await until(() => imgs.every((i) => i.complete), 60000);
  r.broken_images = imgs.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.getAttribute("src"));
  const maths = [...document.querySelectorAll(".math")];
  r.math = maths.length;
  if (maths.length) {
    const ready = await until(() => window.MathJax && MathJax.startup && MathJax.startup.promise, 60000);
    if (!ready) { r.mathjax = "MathJax did not start"; }
    else { await MathJax.startup.promise; r.mathjax = "ok"; }
    r.untypeset = maths.filter((m) => !m.querySelector("mjx-container")).map((m) => m.textContent.slice(0, 80));
    r.math_errors = [...document.querySelectorAll("mjx-merror")].map((e) => e.textContent.slice(0, 120));
  }
  // open what a reader can open: hidden code cells, solutions
  document.querySelectorAll("details").forEach((d) => { d.open = true; });
  document.querySelectorAll(".toggle-hidden").forEach((e) => e.classList.remove("toggle-hidden"));
  await sleep(0);
  const article = document.querySelector("article.bd-article");
  r.overflow = [];
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth + 1) r.overflow.push(`the page scrolls sideways (${page.scrollWidth} > ${page.clientWidth} px)`);
  r.shrunk = [];
  r.uncaptioned = [];
  r.figures = [];
  if (article) {
    const acs = getComputedStyle(article);
    const colRight = article.getBoundingClientRect().right - parseFloat(acs.paddingRight);
    const right = (el) => { const fw = el.closest(".tag_full-width, .full-width"); return fw ? fw.getBoundingClientRect().right : colRight; };
    const label = (el) => (el.closest("[id]") ? "#" + el.closest("[id]").id + " " : "") + el.tagName.toLowerCase() + ": " + (el.getAttribute("src") || el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 80);
    const check = (el, kind) => {
      const box = el.getBoundingClientRect();
      if (box.width === 0) return;
      const scrolls = el.scrollWidth > el.clientWidth + 1 && ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
      if (box.right > right(el) + 1 || scrolls)
        r.overflow.push(`${kind} ${label(el)} (right edge ${Math.round(box.right)} > column ${Math.round(right(el))}` + (scrolls ? `, scrolls ${el.scrollWidth} > ${el.clientWidth}` : "") + ")");
    };
    article.querySelectorAll("pre").forEach((el) => check(el, "code"));
    article.querySelectorAll("div.math, mjx-container[display='true']").forEach((el) => check(el, "formula"));
    article.querySelectorAll("table").forEach((el) => check(el, "table"));
    article.querySelectorAll("img, figure").forEach((el) => check(el, "figure"));
    article.querySelectorAll("*").forEach((el) => {
      const cs = getComputedStyle(el);
      if (["auto", "scroll"].includes(cs.overflowX) && el.scrollWidth > el.clientWidth + 1 && el.getBoundingClientRect().width > 0)
        r.overflow.push(`scrolls sideways ${label(el)} (${el.scrollWidth} > ${el.clientWidth})`);
    });
    article.querySelectorAll("img").forEach((img) => {
      const w = img.getBoundingClientRect().width;
      if (img.naturalWidth && w < img.naturalWidth - 1) r.shrunk.push(`${img.getAttribute("src")}: ${img.naturalWidth} px drawn at ${Math.round(w)} px`);
      const fig = img.closest("figure");
      const num = fig && fig.querySelector("figcaption .caption-number");
      const text = fig && fig.querySelector("figcaption .caption-text");
      if (!num || !text || !text.textContent.trim()) r.uncaptioned.push(img.getAttribute("src"));
      else r.figures.push(num.textContent.trim());
    });
  }
  r.links = [...document.querySelectorAll("a[href]")].map((a) => a.href).filter((h) => h.startsWith(location.origin));
  r.downloads = [...document.querySelectorAll(".dropdown-download-buttons a, a.download")].map((a) => a.href);
  done(r);
})().catch((e) => done({ error: String(e && e.stack || e) }));
"""


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("book-screenshots")


@pytest.fixture(scope="module")
def site(book):
    with serve_directory(book) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def pages(browser, site, screenshots) -> dict:
    """Every page of the book, opened once: name -> report (see PAGE_REPORT_JS)."""
    reports = {}
    console_errors(browser), requested_urls(browser)  # empty the logs
    for name in [*PAGES, "genindex", "search"]:
        browser.get(f"{site}/{name}.html")
        full_page_screenshot(browser, screenshots / f"{name.replace('/', '_')}.png")
        report = browser.execute_async_script(PAGE_REPORT_JS)
        assert "error" not in report, f"{name}: the page check failed: {report['error']}"
        report["console"] = console_errors(browser)
        report["external"] = external(requested_urls(browser), site)
        reports[name] = report
    return reports


def _problems(pages, key) -> dict:
    return {name: r[key] for name, r in pages.items() if r.get(key)}


def _where(screenshots) -> str:
    return f"\n(screenshots of every page: {screenshots})"


def test_every_page_loads_its_images(pages, screenshots):
    assert not _problems(pages, "broken_images"), f"images that did not load: {_problems(pages, 'broken_images')}" \
        + _where(screenshots)


def test_every_formula_is_typeset(pages, screenshots):
    for name, r in pages.items():
        if r.get("math"):
            assert r["mathjax"] == "ok", f"{name}: {r['mathjax']}" + _where(screenshots)
    assert not _problems(pages, "untypeset"), f"formulas left as TeX: {_problems(pages, 'untypeset')}" \
        + _where(screenshots)
    assert not _problems(pages, "math_errors"), f"MathJax errors: {_problems(pages, 'math_errors')}" \
        + _where(screenshots)
    assert sum(r.get("math", 0) for r in pages.values()) > 100


def test_no_console_errors(pages, screenshots):
    assert not _problems(pages, "console"), f"console errors: {_problems(pages, 'console')}" + _where(screenshots)


def test_no_request_leaves_the_book(pages, screenshots):
    assert not _problems(pages, "external"), f"requests outside the book: {_problems(pages, 'external')}" \
        + _where(screenshots)


def test_nothing_is_wider_than_its_column(pages, screenshots):
    problems = _problems(pages, "overflow")
    assert not problems, "wider than the text column (1280 px window):\n" + "\n".join(
        f"{name}: {p}" for name, ps in problems.items() for p in ps) + _where(screenshots)
    shrunk = _problems(pages, "shrunk")
    assert not shrunk, f"figures scaled down to fit (their text shrinks with them): {shrunk}" + _where(screenshots)


def test_every_figure_is_numbered_and_captioned(pages, screenshots):
    assert not _problems(pages, "uncaptioned"), f"figures without a number and caption: " \
        f"{_problems(pages, 'uncaptioned')}" + _where(screenshots)
    for chapter in NOTEBOOKS:
        numbers = pages[chapter]["figures"]
        assert numbers, f"{chapter}: no numbered figure" + _where(screenshots)
        assert len(set(numbers)) == len(numbers), f"{chapter}: figure numbers repeat: {numbers}"


def test_search_shows_text_snippets(browser, site, screenshots):
    browser.get(f"{site}/search.html?q=dictionary")

    def results():
        items = browser.execute_script(
            "return [...document.querySelectorAll('#search-results ul.search li')].map("
            "li => [li.querySelector('a').textContent, (li.querySelector('p.context') || {}).textContent || null])")
        summary = browser.execute_script(
            "const s = document.querySelector('#search-results .search-summary'); return s && s.textContent")
        return items if summary and items and all(text is not None for _, text in items) else None

    hits = wait_for(results, 60, "search results with snippets")
    full_page_screenshot(browser, screenshots / "search-dictionary.png")
    assert len(hits) >= 3, hits
    for title, text in hits:
        assert "dictionar" in text.lower(), f"search hit {title!r} shows no snippet around the query: {text!r}" \
            + _where(screenshots)
        assert not text.startswith("...."), f"search hit {title!r}: {text!r}"


def test_download_and_assignment_links_resolve(pages, screenshots):
    def fetch(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200, url
            return response.read()

    for chapter in NOTEBOOKS:
        notebooks = [h for h in pages[chapter]["downloads"] if h.endswith(".ipynb")]
        assert notebooks, f"{chapter}: no notebook download button" + _where(screenshots)
        nb = json.loads(fetch(notebooks[0]))
        assert any(c.get("outputs") for c in nb["cells"]), f"{chapter}: downloaded notebook without outputs"
    links = [h for h in pages["book/assignments"]["downloads"] if h.endswith(".ipynb")]
    assert {Path(link).name for link in links} == {f"{a}.ipynb" for a in ASSIGNMENTS}, links
    for link in set(links):
        assert json.loads(fetch(link))["metadata"].get("kernelspec"), link
    # every internal link of every page resolves
    targets: dict[str, str] = {}
    for name, report in pages.items():
        for href in report["links"]:
            targets.setdefault(href.split("#")[0], name)
    broken = []
    for target, name in sorted(targets.items()):
        try:
            fetch(target)
        except Exception as exc:  # noqa: BLE001 - report every broken link at once
            broken.append(f"{name}: {target} ({exc})")
    assert not broken, "broken links:\n" + "\n".join(broken)
