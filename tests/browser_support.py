"""Shared by the browser tests: Debian's chromium driven by Playwright, pages, screenshots.

Chromium is the system one (/usr/bin/chromium; `playwright install` is never run).
Screenshots are kept as test artifacts under test-artifacts/browser/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import ARTIFACTS

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = ARTIFACTS / "browser"
# generous: the machine running the tests may be busy; these are hang guards, never measurements
TIMEOUT_MS = 60_000


def fake_mic(wav: Path) -> list[str]:
    """Chromium arguments that make ``wav`` (looped) the microphone."""
    return ARGS + [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
    ]


# import these two into a test module to use the fixtures ``pw`` (Playwright) and ``chrome`` (a browser)
@pytest.fixture(scope="module", name="pw")
def pw_fixture() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: make sysdeps")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module", name="chrome")
def chrome_fixture(pw: Any) -> Iterator[Any]:
    b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
    yield b
    b.close()


def open_page(browser: Any, url: str, locale: str = "en-US", errors: list[str] | None = None) -> Any:
    """The page at ``url``/ui/, loaded; JavaScript errors go to ``errors`` when given."""
    page = browser.new_context(locale=locale, viewport={"width": 1280, "height": 1000}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    if errors is not None:
        page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/ui/", wait_until="domcontentloaded")
    page.wait_for_selector("#em-audio")
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)
