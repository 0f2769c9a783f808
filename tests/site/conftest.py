"""Fixtures for checking the built site in a real browser and the built PDF.

Run by ``tox -e browser`` (``--site _build/html``) and ``tox -e pdf`` (``--pdf _build/handbook.pdf``).
The browser is Debian's Chromium driven by Playwright; no browser is downloaded.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: `sudo apt-get install chromium` (Debian) is what tox -e browser expects")


@pytest.fixture(scope="session")
def site_dir(pytestconfig: pytest.Config) -> Path:
    option = pytestconfig.getoption("--site")
    if not option:
        pytest.skip("no --site given")
    path = Path(option).resolve()
    if not (path / "index.html").is_file():
        pytest.fail(f"{path} holds no built site: run `tox -e html` first")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        pass


@pytest.fixture(scope="session")
def base_url(site_dir: Path) -> Iterator[str]:
    """The site served on a free loopback port for the whole session."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(permissions=["clipboard-read", "clipboard-write"], viewport={"width": 1280, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture(scope="session")
def screenshot_dir(site_dir: Path) -> Path:
    path = site_dir.parent / "screenshots"
    path.mkdir(exist_ok=True)
    return path
