"""The Live tab in Chromium, fed by its fake microphone: it keeps real time and explains its colours."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from browser_support import CHROMIUM, fake_mic, open_page, pw_fixture, shot  # noqa: F401 - fixture
from earmark import synth
from helpers import ServerProcess, encode

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow]

PANEL = "#em-live-panel .em-live:not(.em-error)"


def _panel(page: Any) -> dict[str, str] | None:
    found: dict[str, str] | None = page.evaluate(
        f"() => {{ const e = document.querySelector('{PANEL}'); return e ? {{...e.dataset}} : null }}"
    )
    return found


def test_live_keeps_real_time_and_has_a_legend(pw: Any, served: ServerProcess, tmp_path: Path) -> None:
    # 20 s, beep and noise every 5 s; the fake microphone loops it
    wave = synth.sequence([("beep", 5), ("noise", 5), ("beep", 5), ("noise", 5)], seed=0)
    mic = encode(0.95 * wave / np.abs(wave).max(), tmp_path / "mic.wav")
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=fake_mic(mic))
    errors: list[str] = []
    try:
        page = open_page(browser, served.url, errors=errors)
        requests: list[float] = []
        page.on("request", lambda _: requests.append(time.monotonic()))
        page.get_by_role("tab", name="Live").click()
        page.locator("#em-live-labels textarea").fill("beep, noise, hum, silence")
        # pressed at once: the page itself waits until Gradio's recorder is there
        page.locator("#em-live-mic button.record-button").click()
        page.wait_for_selector(f"{PANEL}[data-count='1']", timeout=120_000)
        first = _panel(page)
        assert first is not None
        # when the audio started flowing, as the page counts it
        started = time.monotonic() - float(first["heardS"])
        while time.monotonic() - started < 42:  # 40 s of input, and a moment for the answer to show
            page.wait_for_timeout(1000)
        now = _panel(page)
        assert now is not None
        shot(page, "live-keeps-pace.png")
        input_s = time.monotonic() - started
        assert float(now["classifiedS"]) >= 36, (
            f"after {input_s:.0f} s of microphone input the live view had classified only "
            f"{now['classifiedS']} s of audio (heard {now['heardS']} s): it falls behind"
        )
        assert not [e for e in errors if "constructor" in e], f"the recorder failed to start: {errors}"
        # the microphone's audio goes in one-second pieces, not ~20 small uploads a second
        sent = [at for at in requests if at >= started]
        assert len(sent) <= 5 * input_s, (
            f"the page sent {len(sent)} requests in {input_s:.0f} s of live input: it floods the server"
        )
        legend = page.locator("#em-live-panel ul.em-legend li[data-label]")
        labels = legend.evaluate_all("ls => ls.map(l => l.dataset.label)")
        assert {"beep", "noise"} <= set(labels), f"the strip's legend names {labels}"
        colours = legend.locator(".em-swatch").evaluate_all(
            "ss => ss.map(s => getComputedStyle(s).backgroundColor)"
        )
        assert len(set(colours)) == len(colours), f"two labels share a colour in the legend: {colours}"
        assert page.locator("#em-live-panel .em-legend-faint").is_visible(), (
            "the legend says what faint bars are"
        )
        rows = page.locator("#em-live-panel tr.em-live-row")
        texts = rows.evaluate_all("rs => rs.map(r => [r.dataset.uncertain, r.cells[1].innerText])")
        for uncertain, text in texts:
            assert (uncertain == "true") == text.startswith("uncertain (best guess:"), texts
    finally:
        browser.close()
