"""Browser fixtures for pytest: ``live_server`` serves the test's ``app`` on a free port, ``page`` is a Playwright
page in headless Chromium (Debian's, no browser download), ``screenshot`` keeps PNGs of what a test saw.

    from tests.browser import live_server, page  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
# Headless Chromium here has no GPU: WebGL runs on SwiftShader, which Chromium now enables only when asked.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]
VIEWPORT = {"width": 1400, "height": 1000}
_STASH_KEY = pytest.StashKey[object]()
_screenshots_announced = False


def chromium_path() -> str | None:
    found = Path("/usr/bin/chromium")
    return str(found) if found.exists() else shutil.which("chromium")


def launch_chromium(playwright):
    """A headless Chromium of the system's (Playwright's own browsers are not downloaded)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The test's ``app`` served from a background thread; yields its base URL (``http://127.0.0.1:PORT``)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _skip(reason: str) -> None:
    """Skip a browser test, or fail it where a browser is required (.ci/run sets TOPICQ_REQUIRE_BROWSER=1)."""
    if os.environ.get("TOPICQ_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + "; TOPICQ_REQUIRE_BROWSER=1 says it must run here")
    pytest.skip(reason)


def _browser(config: pytest.Config):
    """One Chromium for the whole test session, started on first use and closed when pytest ends."""
    browser = config.stash.get(_STASH_KEY, None)
    if browser is None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            _skip("browser test: the playwright package is not installed (pip install '.[test]')")
        if chromium_path() is None:
            _skip("browser test: no Chromium at /usr/bin/chromium or on PATH (apt-get install chromium)")
        playwright = sync_playwright().start()
        browser = launch_chromium(playwright)
        config.stash[_STASH_KEY] = browser

        def stop() -> None:
            browser.close()
            playwright.stop()

        config.add_cleanup(stop)
    return browser


@pytest.fixture
def page(request):
    """A fresh Playwright page (its own context: no cookies or cache from other tests) in headless Chromium.
    An uncaught error in the page fails the test; console errors (a failed request logs one) are printed."""
    context = _browser(request.config).new_context(viewport=VIEWPORT)
    new_page = context.new_page()
    page_errors: list[str] = []
    new_page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    new_page.on("console", lambda msg: msg.type == "error" and print(f"browser console: {msg.text}"))
    yield new_page
    context.close()
    assert page_errors == [], f"uncaught errors in the page: {page_errors}"


def screenshot(page, name: str, selector: str | None = None) -> Path:
    """Save the page (or the element ``selector``) as ``<name>.png`` under $TOPICQ_SCREENSHOTS (default
    var/screenshots); prints the folder once."""
    global _screenshots_announced
    folder = Path(os.environ.get("TOPICQ_SCREENSHOTS") or ROOT / "var" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    if not _screenshots_announced:
        print(f"screenshots in {folder}")
        _screenshots_announced = True
    return path
