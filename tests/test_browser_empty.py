"""A first visit, before anything was tagged or monitored: the empty tabs say what to run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import chrome_fixture, open_page, pw_fixture, shot  # noqa: F401 - fixtures
from helpers import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def empty_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(home=tmp_path_factory.mktemp("empty-home"), timeout_s=180)
    yield server
    server.stop()


def _says(page: Any, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)", arg=[selector, text]
    )


def test_empty_library_and_events_tabs_say_what_to_run(chrome: Any, empty_site: ServerProcess) -> None:
    page = open_page(chrome, empty_site.url)
    try:
        page.get_by_role("tab", name="Library").click()
        # the review queue is empty: where files for review come from
        _says(page, "#em-review-info", "earmark tag DIR")
        page.locator("#em-lib-query textarea, #em-lib-query input").first.fill("glass breaking")
        page.locator("#em-lib-search").click()
        # nothing to search yet: how the library is filled
        _says(page, "#em-lib-status", "earmark tag ~/Sounds")
        shot(page, "library-empty.png")
        page.get_by_role("tab", name="Events").click()
        # no events yet: the command that makes them
        _says(page, "#em-ev-status", "earmark monitor SOURCE")
        shot(page, "events-empty.png")
    finally:
        page.context.close()
