"""Pure parts of the page and the CLI: label parsing, the live panel, the live session's pacing."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from typing import Any

import numpy as np
import pytest

from earmark.errors import LabelError
from earmark.labels import parse_labels
from earmark.server.ui_render import PALETTE, LiveResult, label_colors, live_html


def test_a_list_element_is_one_label_even_with_a_comma() -> None:
    assert parse_labels(["knock, knock", "hum"]) == ("knock, knock", "hum")
    assert parse_labels("knock, knock, hum") == ("knock", "hum")  # a string is still a list of labels


def test_labels_equal_after_nfc_are_one_label(caplog: pytest.LogCaptureFixture) -> None:
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    with caplog.at_level(logging.WARNING, logger="earmark"):
        labels = parse_labels([composed, decomposed, "tea"])
    assert labels == ("café", "tea") and unicodedata.is_normalized("NFC", labels[0])
    assert "duplicate labels ignored" in caplog.text


def test_no_labels_says_so() -> None:
    with pytest.raises(LabelError, match="no labels given"):
        parse_labels([], None, " , ")
    with pytest.raises(LabelError, match="need at least 2 labels"):
        parse_labels(["hum"])


def _r(at: float, top: str, p: float, uncertain: bool = False) -> LiveResult:
    return LiveResult(at, top, p, uncertain, -20.0, labels=("beep", "noise", "hum"))


def test_the_live_panel_has_a_legend_and_says_uncertain_with_the_best_guess() -> None:
    html = live_html(
        [_r(2, "beep", 0.9), _r(4, "noise", 0.68, uncertain=True)],
        "en",
        window_s=10,
        every_s=2,
        heard_s=4.5,
        skipped=2,
    )
    assert 'data-heard-s="4.5"' in html and 'data-classified-s="4.0"' in html
    assert "uncertain (best guess: noise, 68.0%)" in html.split("<svg")[0], "the header names the best guess"
    rows = html.split("<tbody>")[1]
    assert rows.index("uncertain (best guess: noise, 68.0%)") < rows.index("beep (90.0%)"), "newest first"
    legend = html.split('class="em-legend"')[1]
    for label in ("beep", "noise", "hum"):
        assert f'data-label="{label}"' in legend
    assert "below the threshold" in legend
    assert "2 window(s) skipped" in html


def test_labels_next_to_each_other_never_share_a_colour() -> None:
    colors = label_colors(["beep", "noise", "hum", "clicks", "chirp", "silence", "a", "b"])
    assert len(set(colors.values())) == 8 and set(colors.values()) == set(PALETTE)


class _SlowRunner:
    """Answers after ``release`` is set: a model slower than the microphone."""

    sample_rate = 16_000

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.release = asyncio.Event()

    def options(self, **kw: Any) -> Any:
        return kw

    async def classify_samples(self, samples: np.ndarray, labels: Any, options: Any, **kw: Any) -> Any:
        from types import SimpleNamespace

        self.calls.append(samples.size / self.sample_rate)
        await self.release.wait()
        top = SimpleNamespace(label="beep", probability=0.9)
        return SimpleNamespace(top=top, uncertain=False, labels=("beep", "hum"))


def test_a_slow_model_never_builds_a_backlog(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from earmark.server.settings import ServerSettings
    from earmark.server.ui_live import make_handler
    from helpers import encode

    chunk = encode(np.zeros(16_000, np.float32), tmp_path / "chunk.wav", rate=16_000)  # 1 s of silence
    runner = _SlowRunner()
    on_chunk = make_handler(runner, ServerSettings(live_window_s=2, live_every_s=2))

    async def stream() -> Any:
        state = None
        for _ in range(9):  # 9 s of audio while the model answers only once
            html, state = await on_chunk(str(chunk), "beep, hum", 0.7, state, "", None)
            await asyncio.sleep(0)
        calls_while_busy = len(runner.calls)
        runner.release.set()
        await asyncio.sleep(0.05)
        html, state = await on_chunk(str(chunk), "beep, hum", 0.7, state, "", None)
        return calls_while_busy, html, state

    calls_while_busy, html, state = asyncio.run(stream())
    assert calls_while_busy == 1, "while the model works, chunks are only buffered"
    assert state.heard_s == pytest.approx(10.0, abs=0.05), "every chunk was taken at once"
    assert [r.at_s for r in state.history] == [2.0]
    assert 'data-heard-s="10.0"' in html and 'data-classified-s="2.0"' in html
    # the next window is the newest audio: the 6 s in between are skipped (3 windows), not queued
    assert state.task is not None and state.task_at_s == pytest.approx(10.0, abs=0.05)
    assert state.skipped == 3 and "3 window(s) skipped" in html
