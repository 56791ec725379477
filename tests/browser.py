"""What the browser tests share: Debian's Chromium driven by Playwright (`chromium()`, the
`browser` fixture), the app under test served by uvicorn in a thread of the test process
(`serve`, and the `served` fixture for the seeded atlas), pages and signed-in sessions
(`open_page`, `Session`).

    from tests.browser import browser_fixture, needs_chromium, serve  # noqa: F401 (the `browser` fixture)

    pytestmark = needs_chromium

    @pytest.fixture(scope="module")
    def served(tmp_path_factory):
        with serve(create_app(url)) as base:
            yield base

    def test_page(served, browser): ...

Importing `browser_fixture` makes the fixture `browser` (one Chromium per module) available to
the module's tests; importing `seeded_site` does the same for `served` (base URL, seeded atlas).
Tests are skipped where /usr/bin/chromium is missing (`needs_chromium`) or Playwright is not
installed (`chromium()`).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.community_fixtures import PASSWORD
from tests.test_web_serve import free_port
from tests.web_atlas import SeededAtlas, sqlite_atlas

CHROMIUM = "/usr/bin/chromium"
HEADLESS = ("--headless", "--no-sandbox")
NO_GPU = ("--disable-gpu",)
SOFTWARE_WEBGL = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")  # WebGL without a GPU (the map)


def chromium_installed() -> bool:
    return shutil.which(CHROMIUM) is not None


needs_chromium = pytest.mark.skipif(not chromium_installed(), reason=f"{CHROMIUM} is not installed")


@contextmanager
def chromium(*, webgl: bool = False) -> Iterator[Any]:
    """Headless Chromium (a Playwright `Browser`); `webgl` renders WebGL in software instead of
    turning the GPU off. Skips the test where Playwright is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[*HEADLESS, *(SOFTWARE_WEBGL if webgl else NO_GPU)])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Any]:
    """`browser`: one Chromium for the test module."""
    with chromium() as launched:
        yield launched


@contextmanager
def serve(app: Any, *, seconds: float = 30) -> Iterator[str]:
    """`app` served by uvicorn on a free port in a daemon thread; yields its base URL and stops
    the server afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        raise RuntimeError(f"uvicorn did not start on port {port} within {seconds:g} s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module", name="served")
def seeded_site(tmp_path_factory) -> Iterator[tuple[str, SeededAtlas]]:
    """`served`: the seeded SQLite atlas (tests/web_atlas.py) served by uvicorn; (base URL, atlas)."""
    from latentpedia.web import create_app

    atlas = sqlite_atlas(tmp_path_factory)
    with serve(create_app(atlas.url)) as base:
        yield base, atlas


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A new page at `url` and the list its dialogs' messages go to (each dialog dismissed)."""
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    return page, dialogs


class Session:
    """A browser context (its own cookies) with every alert recorded and confirms accepted."""

    def __init__(self, browser, base: str):
        self.base, self.context = base, browser.new_context()
        self.page = self.context.new_page()
        self.alerts: list[str] = []
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        if dialog.type == "confirm":
            dialog.accept()
        else:
            self.alerts.append(dialog.message)
            dialog.dismiss()

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.goto("/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector("#logout")

    def submit(self, form: str, **fields: str) -> None:
        """Fill and submit an api-form; wait for the reload it triggers."""
        for name, value in fields.items():
            self.page.fill(f"{form} [name={name}]", value)
        with self.page.expect_navigation():
            self.page.click(f"{form} button[type=submit]")

    def pwned(self) -> bool:
        return bool(self.page.evaluate("() => window.__pwned === 1"))

    def close(self) -> None:
        self.context.close()
