"""The page in Debian's chromium, driven by Playwright: classify, timeline, Chinese, live microphone.

Chromium is the system one (/usr/bin/chromium; `playwright install` is never run). The
Live tab hears a wav file through Chromium's fake microphone. Screenshots go to
test-artifacts/browser/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earmark import synth
from helpers import ARTIFACTS, ServerProcess, encode, sound_file

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = ARTIFACTS / "browser"


def _fake_mic(wav: Path) -> list[str]:
    return ARGS + [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
    ]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: make sysdeps")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
    yield b
    b.close()


def _open(browser: Any, served: ServerProcess, locale: str = "en-US") -> Any:
    page = browser.new_context(locale=locale, viewport={"width": 1280, "height": 1000}).new_page()
    page.set_default_timeout(30_000)
    page.goto(served.url + "/ui/", wait_until="domcontentloaded")
    page.wait_for_selector("#em-audio")
    return page


def _classify(page: Any, audio: Path, labels: str | None) -> None:
    page.locator("#em-audio input[type=file]").set_input_files(str(audio))
    page.wait_for_selector("#em-audio [data-testid='waveform-controls']")  # uploaded, the player is there
    if labels is not None:
        page.locator("#em-labels textarea").fill(labels)
    page.locator("#em-classify").click()
    page.wait_for_selector("#em-summary .em-summary")


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_upload_a_beep_and_see_beep_on_top(browser: Any, served: ServerProcess, tmp_path: Path) -> None:
    page = _open(browser, served)
    try:
        _classify(page, sound_file(tmp_path, "beep", 8, ".mp3"), "hum, beep, noise, clicks")
        summary = page.locator("#em-summary .em-summary")
        assert summary.get_attribute("data-label") == "beep"
        assert page.locator("#em-bars .em-bar-row").first.get_attribute("data-label") == "beep"
        assert page.locator("#em-bars .em-bar-row").count() == 4
        assert page.locator("#em-summary .em-top3 li").count() == 3
        page.wait_for_selector("#em-downloads a[download]")
        links = page.locator("#em-downloads a[download]").evaluate_all("as => as.map(a => a.href)")
        assert sorted(link.rsplit("/", 1)[-1] for link in links) == [
            "beep-0.earmark.csv",
            "beep-0.earmark.json",
        ]
        assert not page.locator("#em-timeline svg").is_visible()  # one window: no timeline
        _shot(page, "classify-beep.png")
    finally:
        page.context.close()


def test_a_long_file_shows_its_timeline_in_chinese(
    browser: Any, served: ServerProcess, tmp_path: Path
) -> None:
    wave = synth.sequence([("hum", 10), ("clicks", 10), ("beep", 10)])
    page = _open(browser, served, locale="zh-CN")
    try:
        assert page.get_by_role("tab").all_inner_texts()[:2] == ["分类", "实时"]
        assert page.locator("#em-pack input").input_value() == "零样本（使用下方标签）"
        _classify(page, encode(wave, tmp_path / "sequence.mp3"), "hum, clicks, beep, 狗叫")
        timeline = page.locator("#em-timeline svg[data-testid='timeline-svg']")
        timeline.wait_for(state="visible")
        segments = page.locator("#em-timeline table.em-segments tbody tr")
        assert segments.evaluate_all("rows => rows.map(r => r.dataset.label)") == ["hum", "clicks", "beep"]
        assert timeline.locator("rect.em-segment").count() == 3
        warning = page.locator("#em-summary .em-warning")
        assert warning.is_visible() and "狗叫" in warning.inner_text() and "英文" in warning.inner_text()
        _shot(page, "classify-timeline-zh.png")
    finally:
        page.context.close()


def test_a_classifier_pack_picked_on_the_page(
    browser: Any, served: ServerProcess, nonsense_sets: Any
) -> None:
    page = _open(browser, served)
    try:
        choice = page.locator("#em-pack input")
        assert choice.input_value() == "zero-shot (labels below)"
        choice.click()
        page.get_by_role("option", name="ab", exact=True).click()
        labels = page.locator("#em-labels textarea")
        page.wait_for_function(
            "() => document.querySelector('#em-labels textarea')?.value === 'class A, class B, noise'"
        )
        assert labels.is_disabled()  # the pack's labels, not typed ones
        assert (
            page.locator("#em-preset_test").is_disabled()
            and page.locator("#em-template textarea").is_disabled()
        )
        note = page.locator("#em-pack-note .em-pack-note")
        assert note.get_attribute("data-pack") == "ab" and "15 training examples" in note.inner_text()
        # a hum the pack never heard: zero-shot answers "noise" for it (the tiny model never read "class B")
        _classify(page, nonsense_sets[1] / "class_b" / "class_b-0.wav", None)
        assert page.locator("#em-summary .em-summary").get_attribute("data-label") == "class B"
        rows = page.locator("#em-bars .em-bar-row").evaluate_all("rs => rs.map(r => r.dataset.label)")
        assert rows[0] == "class B" and sorted(rows) == ["class A", "class B", "noise"]
        assert "scored by classifier pack ab" in page.locator("#em-summary .em-meta").inner_text()
        _shot(page, "classify-pack.png")
        choice.click()
        page.get_by_role("option", name="zero-shot (labels below)").click()
        page.wait_for_function("() => !document.querySelector('#em-labels textarea').disabled")
        assert not note.is_visible()
        # an example brings its own labels: picking one while a pack is chosen goes back to zero-shot
        choice.click()
        page.get_by_role("option", name="ab", exact=True).click()
        page.wait_for_function("() => document.querySelector('#em-labels textarea').disabled")
        page.get_by_text("beep (5 s)", exact=True).click()
        page.wait_for_function("() => !document.querySelector('#em-labels textarea').disabled")
        assert choice.input_value() == "zero-shot (labels below)"
        assert "beep" in labels.input_value() and "class A" not in labels.input_value()
        # the Live tab offers the same choice
        page.get_by_role("tab", name="Live").click()
        page.locator("#em-live-pack input").click()
        page.get_by_role("option", name="ab", exact=True).click()
        page.wait_for_function(
            "() => document.querySelector('#em-live-labels textarea')?.value === 'class A, class B, noise'"
        )
        assert page.locator("#em-live-labels textarea").is_disabled()
    finally:
        page.context.close()


def test_live_tab_hears_the_microphone_change(playwright: Any, served: ServerProcess, tmp_path: Path) -> None:
    # Chromium's fake device plays the file about 18 dB quieter (and loops it); these two stay recognisable
    # at that level. 10 s each: every 10 s live window can hold one sound alone, however late the page starts.
    wave = synth.sequence([("hum", 10), ("beep", 10)], seed=0)
    mic = encode(0.95 * wave / np.abs(wave).max(), tmp_path / "mic.wav")
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=_fake_mic(mic))
    try:
        page = _open(browser, served)
        page.get_by_role("tab", name="Live").click()
        page.locator("#em-live-labels textarea").fill("hum, beep, noise, silence")
        page.locator("#em-live-mic button.record-button").click()
        heard: list[str] = []
        # a hang guard, not a speed test: a page on a busy machine may take several loops of the file
        deadline = time.monotonic() + 180
        while not {"hum", "beep"} <= set(heard):
            assert time.monotonic() < deadline, f"the live tab heard only {heard}"
            page.wait_for_timeout(500)
            heard = page.locator("#em-live-panel tr.em-live-row").evaluate_all(
                "rs => rs.map(r => r.dataset.label)"
            )
        settings = page.evaluate("""async () => {
            const s = await navigator.mediaDevices.getUserMedia({audio: true});  // as Gradio asks
            const t = s.getAudioTracks()[0].getSettings();
            s.getTracks().forEach(x => x.stop());
            return t;
        }""")
        assert settings["echoCancellation"] is False
        assert settings["noiseSuppression"] is False
        assert settings["autoGainControl"] is False
        _shot(page, "live-fake-mic.png")
    finally:
        browser.close()


LEVELS_JS = """async () => {
    const measure = async (getUserMedia) => {
        const stream = await getUserMedia({audio: true});
        const ctx = new AudioContext();
        const analyser = ctx.createAnalyser();
        analyser.fftSize = 4096;
        ctx.createMediaStreamSource(stream).connect(analyser);
        const buf = new Float32Array(analyser.fftSize);
        const levels = [];
        for (let i = 0; i < 8; i++) {
            await new Promise(r => setTimeout(r, 500));
            analyser.getFloatTimeDomainData(buf);
            levels.push(Math.sqrt(buf.reduce((a, v) => a + v * v, 0) / buf.length));
        }
        stream.getTracks().forEach(t => t.stop());
        await ctx.close();
        return levels;
    };
    const media = navigator.mediaDevices;
    const page = await measure(c => media.getUserMedia(c));          // what the page's components get
    const browser = await measure(c => media.__earmarkRaw(c));       // Chrome's default processing
    return {page, browser};
}"""


def test_a_steady_tone_keeps_its_level(playwright: Any, served: ServerProcess, tmp_path: Path) -> None:
    tone = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(48_000 * 8) / 48_000)).astype(np.float32)
    wav = encode(tone, tmp_path / "tone.wav")
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=_fake_mic(wav))
    try:
        page = _open(browser, served)
        levels = page.evaluate(LEVELS_JS)
    finally:
        browser.close()
    page_levels, raw_levels = np.array(levels["page"]), np.array(levels["browser"])
    assert page_levels[:2].mean() > 1e-3, levels
    # the page's microphone keeps a steady tone steady...
    assert page_levels[-2:].mean() > 0.7 * page_levels[:2].mean(), levels
    # ...where Chrome's default processing (what plain getUserMedia({audio: true}) gets) fades it
    assert raw_levels[-2:].mean() < 0.5 * raw_levels[:2].mean(), levels
