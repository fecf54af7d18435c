"""Headless Chromium for the tests of the book and of JupyterLab (selenium, system chromedriver).

Nothing downloads a browser: the Debian packages ``chromium`` and ``chromium-driver`` are used
(``make test`` installs them; see the README).  Selenium's own driver manager is never asked
(the driver's path is given).  Every wait is an explicit wait with a generous timeout.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1280, 1000)
#: Chromium as root needs --no-sandbox; the rest keeps it from reaching out on its own.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def find_chromium() -> tuple[str, str]:
    """(chromium, chromedriver) executables, or pytest.fail with the command that installs them."""
    browser = next((shutil.which(c) for c in CHROMIUM_CANDIDATES if shutil.which(c)), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        missing = [p for p, found in (("chromium", browser), ("chromium-driver", driver)) if not found]
        pytest.fail(
            f"the browser tests need the Debian packages {' and '.join(missing)} "
            f"(`make test` installs them as root; otherwise: sudo apt-get install -y {' '.join(missing)})",
            pytrace=False,
        )
    return browser, driver


@contextlib.contextmanager
def chromium(window=WINDOW, performance_log: bool = True):
    """A headless Chromium driven by selenium, with a fresh profile; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager (if ever asked) must not download
    browser, driver_path = find_chromium()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.add_argument(f"--user-data-dir={profile}")
    prefs = {"browser": "ALL"}
    if performance_log:
        prefs["performance"] = "ALL"
    options.set_capability("goog:loggingPrefs", prefs)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@contextlib.contextmanager
def serve_directory(root: Path):
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call (the log is emptied by reading it)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def external(urls, base: str) -> list[str]:
    """The URLs that leave ``base`` (data:, blob: and about: stay in the page)."""
    host = urlsplit(base).netloc
    out = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about", "chrome", "devtools"):
            continue
        if parts.netloc != host:
            out.append(url)
    return out


def full_page_screenshot(driver, path: Path) -> None:
    """The whole page (not just the window) as a PNG."""
    size = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 30000), "scale": 1},
    })
    import base64

    path.write_bytes(base64.b64decode(shot["data"]))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # the page is still changing: try again
            last_exc = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f" (last error: {last_exc})" if last_exc else ""))
