"""The student's JupyterLab (`make lab`, lab/lab.py) in headless Chromium.

The real thing, as a student meets it: the assignments are released to a fresh local exchange
with nbgrader, JupyterLab starts on a free loopback port with the student profile, and the
browser (1) finds nbgrader's student tools and none of the instructor's, (2) fetches problem set
1 in the Assignments tab, (3) opens the fetched notebook with a student's answers filled in,
runs it (the visible checks), (4) presses Validate and reads the dialog, and (5) submits it.
Screenshots of each step go to a folder that every failure names.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from browser_harness import chromium, console_errors, free_port, full_page_screenshot, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lab"))
import lab  # noqa: E402  (lab/lab.py)

ASSIGNMENT = "ps1_sparse_coding"
STUDENT_PLUGINS_OFF = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                       "@jupyter/nbgrader:course-list")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lab-screenshots")


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory):
    """`make lab` in a temporary folder: a fresh exchange, the student's home, JupyterLab on 127.0.0.1."""
    base = tmp_path_factory.mktemp("lab")
    home, exchange = base / "home", base / "exchange"
    lab.release(exchange)
    port, token = free_port(), secrets.token_hex(16)
    log = (base / "jupyterlab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "lab" / "lab.py"), "--home", str(home), "--exchange", str(exchange),
         "--no-release", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # a fresh Jupyter user folder: no workspace, setting or kernel of another session
        env=dict(os.environ, LECTURE_AE_PROGRESS="0", JUPYTER_CONFIG_DIR=str(base / "jupyter" / "config"),
                 JUPYTER_DATA_DIR=str(base / "jupyter" / "data"), JUPYTER_RUNTIME_DIR=str(base / "jupyter" / "run")),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        def up():
            if proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited with {proc.returncode}:\n{(base / 'jupyterlab.log').read_text()}")
            return _get(f"{url}/api/status?token={token}") == 200
        try:
            wait_for(up, 180, "JupyterLab to answer")
        except AssertionError as err:
            if "exited" in str(err):
                raise
            raise AssertionError(f"{err}\n{(base / 'jupyterlab.log').read_text()[-3000:]}") from None
        yield {"url": url, "token": token, "home": home, "exchange": exchange, "log": base / "jupyterlab.log"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its kernels: the group this test started
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def _solved(release: Path) -> None:
    """Fill the student's cells of the fetched notebook with the solutions (as a student would)."""
    source = nbformat.read(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = {}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            text = re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", "", cell.source, flags=re.MULTILINE)
            answers[meta["grade_id"]] = text
    nb = nbformat.read(release, as_version=4)
    filled = 0
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
            filled += 1
    assert filled >= 5, f"only {filled} answer cells found in the release"
    nbformat.write(nb, release)


def _item(listing: str, then: str = "") -> str:
    """XPath of the problem set's row in one of the Assignments tab's lists (and of ``then`` in it)."""
    row = (f"//div[@id='{listing}']/div[contains(@class,'list_item')]"
           f"[./div/span[contains(@class,'item_name')][normalize-space(.)='{ASSIGNMENT}']]")
    return f"{row}//{then}" if then else row


def _js(driver, script, *args):
    return driver.execute_script(script, *args)


def test_student_fetches_runs_validates_and_submits(student_lab, shots):
    url, token, home = student_lab["url"], student_lab["token"], student_lab["home"]
    where = f"\n(screenshots: {shots}; JupyterLab's log: {student_lab['log']})"
    # the server: the student's extensions only
    assert _get(f"{url}/formgrader?token={token}") == 404, "the student's server runs the Formgrader" + where
    listing = json.loads(urllib.request.urlopen(f"{url}/assignments?course_id=lecture_ae&token={token}").read())
    assert listing["success"] and ASSIGNMENT in {a["assignment_id"] for a in listing["value"]}, listing

    with chromium(performance_log=False) as d:
        d.get(f"{url}/lab?token={token}")
        wait_for(lambda: _js(d, "return !!(window.jupyterapp && window.jupyterapp.started)"), 180,
                 "JupyterLab to start in the browser")
        _js(d, "return window.jupyterapp.started")
        wait_for(lambda: _js(d, "return document.querySelector('.lm-MenuBar-item') !== null"), 60, "the menu bar")
        full_page_screenshot(d, shots / "1-lab.png")
        # (1) nbgrader's student tools only
        commands = _js(d, "return window.jupyterapp.commands.listCommands().filter(c => c.startsWith('nbgrader:'))")
        assert commands == ["nbgrader:open-assignment-list"], f"nbgrader commands in the student's lab: {commands}" + where
        disabled = _js(d, "return JSON.parse(document.getElementById('jupyter-config-data').textContent).disabledExtensions")
        assert set(STUDENT_PLUGINS_OFF) <= set(disabled), disabled

        # (2) Assignments tab: the menu's only nbgrader entry, then Fetch
        menu = wait_for(lambda: [e for e in d.find_elements("css selector", ".lm-MenuBar-item")
                                 if e.text.strip() == "Nbgrader"], 30, "the Nbgrader menu")[0]
        menu.click()
        entries = wait_for(lambda: [e for e in d.find_elements("css selector", ".lm-Menu-item:not(.lm-mod-hidden)")
                                    if e.text.strip()], 30, "the Nbgrader menu's entries")
        assert [e.text.strip() for e in entries] == ["Assignment List"], [e.text for e in entries]
        entries[0].click()
        fetch = wait_for(lambda: d.find_elements("xpath", _item("released_assignments_list", "button[text()='Fetch']")),
                         90, "the Fetch button")[0]
        full_page_screenshot(d, shots / "2-assignments.png")
        fetch.click()
        wait_for(lambda: d.find_elements("xpath", _item("fetched_assignments_list", "button[text()='Submit']")), 90,
                 "the fetched assignment in the list")
        notebook = home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert notebook.is_file(), f"Fetch did not copy the notebook into the student's folder {home}" + where
        full_page_screenshot(d, shots / "3-fetched.png")

        # (3) a student's answers, then run the notebook: the visible checks print their verdicts
        _solved(notebook)
        _js(d, "window.jupyterapp.commands.execute('docmanager:open', {path: arguments[0]})",
            f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
        wait_for(lambda: _js(d, "const p = window.jupyterapp.shell.currentWidget;"
                                "return p && p.sessionContext && p.sessionContext.session && p.sessionContext.session.kernel"
                                " && p.sessionContext.session.kernel.status === 'idle'"), 180, "the notebook's kernel")
        _js(d, "window.jupyterapp.commands.execute('notebook:run-all-cells')")
        n_code = sum(c.cell_type == "code" for c in nbformat.read(notebook, as_version=4).cells)

        def ran():
            counts = _js(d, "const p = window.jupyterapp.shell.currentWidget;"
                            "return p.content.widgets.filter(c => c.model.type === 'code')"
                            ".map(c => c.model.sharedModel.execution_count)")
            busy = _js(d, "return window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status")
            return busy == "idle" and len(counts) == n_code and all(c is not None for c in counts)

        wait_for(ran, 300, "every cell of the notebook to run")
        outputs = _js(d, "return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) "
                         ".jp-OutputArea-output')].map(o => [o.getAttribute('data-mime-type'), o.textContent])")
        errors = [text for mime, text in outputs if mime == "application/vnd.jupyter.stderr" and "Error" in text]
        assert not errors, f"the visible checks failed on the solutions: {errors[:3]}" + where
        verdicts = [text.strip() for _, text in outputs if "visible checks passed" in text]
        checked = {v.split(":")[0] for v in verdicts}
        assert checked >= {"soft_threshold", "l1_objective", "ista", "update_dictionary"}, \
            f"the visible checks did not all pass: {verdicts}" + where
        full_page_screenshot(d, shots / "4-ran.png")

        # (4) Validate: nbgrader runs the saved notebook in a fresh kernel and reports in a dialog
        _js(d, "return window.jupyterapp.commands.execute('docmanager:save')")
        button = wait_for(lambda: d.find_elements(  # nbgrader's toolbar button (a jp-button)
            "css selector", ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar .validate-button"), 30,
            "the Validate button")
        button[0].click()
        dialog = wait_for(lambda: [e for e in d.find_elements("css selector", ".jp-Dialog-content")
                                   if "Validat" in e.text], 300, "the validation dialog")[0]
        full_page_screenshot(d, shots / "5-validated.png")
        text = dialog.text
        assert "Success! Your notebook passes all the tests." in text, f"Validate reported:\n{text}" + where
        d.find_element("css selector", ".jp-Dialog-content .jp-mod-accept").click()

        # (5) Submit in the Assignments tab
        _js(d, "window.jupyterapp.commands.execute('nbgrader:open-assignment-list')")
        submit = wait_for(lambda: d.find_elements("xpath", _item("fetched_assignments_list", "button[text()='Submit']")),
                          60, "the Submit button")[0]
        submit.click()
        wait_for(lambda: d.find_elements("xpath", _item("submitted_assignments_list")), 90,
                 "the submitted assignment in the list")
        full_page_screenshot(d, shots / "6-submitted.png")
        inbound = list((student_lab["exchange"] / "lecture_ae" / "inbound").glob(f"*+{ASSIGNMENT}+*"))
        assert inbound, "Submit put nothing into the exchange's inbound folder" + where
        assert (inbound[0] / f"{ASSIGNMENT}.ipynb").is_file()
        errors = console_errors(d)
        assert not errors, f"console errors in the student's lab: {errors}" + where
