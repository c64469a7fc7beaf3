"""The page's tabs in Debian's chromium: examples play, errors stay, the Library queue and the
Events tab (an event from a real `earmark monitor` run) are there on opening, verdicts round-trip
to the export calibrate/fit read, and Chinese renders as Chinese on every tab.

Screenshots are kept under test-artifacts/browser/.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_support import chrome_fixture, open_page, pw_fixture, shot  # noqa: F401 - fixtures
from earmark import synth
from helpers import ROOT, TINY_MODEL, ServerProcess, encode, sound_file

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow]


def _monitor_run(home: Path, tmp: Path) -> None:
    """A real `earmark monitor` run over a file: beeps raise events with clips in the home's database."""
    wave = synth.sequence([("hum", 6), ("beep", 8), ("hum", 6)], seed=3)
    source = encode(wave, tmp / "door.wav")
    env = dict(
        os.environ,
        EARMARK_HOME=str(home),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    args = ["monitor", str(source), "-l", "beep, hum, noise, silence", "-a", "beep", "-m", str(TINY_MODEL)]
    args += ["--fast", "--window-s", "2", "--hop-s", "1", "-k", "2", "-n", "3", "--max-quiet-s", "2"]
    args += ["--clips-dir", str(home / "clips"), "--clip-format", "wav", "--threads", "1"]
    r = subprocess.run(
        [sys.executable, "-m", "earmark", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    assert list((home / "clips").glob("*.wav")), f"the monitor kept no clip:\n{r.stderr}"


def _library(home: Path, tmp: Path, classifier: Any) -> None:
    """Tagged files the model is unsure of (sounds it was not asked about): all wait for review."""
    from earmark.library import TagOptions, tag_paths
    from earmark.store import Database

    lib = tmp / "sounds"
    lib.mkdir()
    for kind in ("chirp", "clicks"):
        sound_file(lib, kind, 2, ".wav")
    db = Database(home / "earmark.db")
    list(tag_paths(db, [lib], TagOptions(labels=("beep", "hum"), min_confidence=1.0), classifier))
    db.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, classifier: Any) -> Iterator[tuple[ServerProcess, Path]]:
    home = tmp_path_factory.mktemp("pages-home")
    tmp = tmp_path_factory.mktemp("pages-data")
    _monitor_run(home, tmp)
    _library(home, tmp, classifier)
    server = ServerProcess(home=home, timeout_s=180)
    yield server, home
    server.stop()


def test_an_example_plays_and_replaces_the_previous_result(chrome: Any, site: Any, tmp_path: Path) -> None:
    server, _ = site
    page = open_page(chrome, server.url)
    try:
        page.locator("#em-audio input[type=file]").set_input_files(str(sound_file(tmp_path, "hum", 3)))
        page.wait_for_selector("#em-audio [data-testid='waveform-controls']")
        page.locator("#em-labels textarea").fill("hum, beep, noise")
        page.locator("#em-classify").click()
        page.wait_for_selector("#em-summary .em-summary")
        page.get_by_text("beep (5 s)", exact=True).click()
        # the previous file's answer goes as soon as another input is picked
        page.wait_for_function("() => !document.querySelector('#em-summary .em-summary')")
        # the example's own waveform (5 s) is in place: the previous file's (3 s) showed 0:03, and a Play
        # pressed on it while it is being replaced plays nothing
        page.wait_for_function(
            "() => [...document.querySelectorAll('#em-audio *')].some(e => e.children.length === 0 && "
            "e.textContent.trim() === '0:05')"
        )
        page.locator("#em-audio button[aria-label='Play']").first.click()
        # the player says it is playing (its button turns into Pause) ...
        page.wait_for_selector("#em-audio button[aria-label='Pause']")
        # ... and the position moves past 0:00
        page.wait_for_function(
            "() => [...document.querySelectorAll('#em-audio *')].filter(e => e.children.length === 0 && "
            "/^0:0\\d$/.test(e.textContent.trim())).map(e => e.textContent.trim()).some(t => t !== '0:00' "
            "&& t !== '0:05')"
        )
        shot(page, "classify-example-playing.png")
        # "Use via API" is the documented REST API, not Gradio's panel of internal events
        assert page.locator("#em-api a[href='/docs']").count() == 1
        assert page.get_by_text("Use via API or MCP").count() == 0
        assert page.locator("footer").get_by_text("Use via API", exact=False).count() == 0
    finally:
        page.context.close()


def test_an_error_stays_in_the_result_area(chrome: Any, site: Any, tmp_path: Path) -> None:
    server, _ = site
    photo = tmp_path / "photo.wav"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    page = open_page(chrome, server.url)
    try:
        page.locator("#em-audio input[type=file]").set_input_files(str(photo))
        page.locator("#em-labels textarea").fill("hum, beep")
        page.wait_for_timeout(2000)  # let the upload land
        page.locator("#em-classify").click()
        error = page.locator("#em-summary .em-error")
        error.wait_for()
        assert "Cannot classify" in error.inner_text() and "photo" in error.inner_text()
        page.wait_for_timeout(15_000)  # longer than a toast lives
        assert error.is_visible(), "the error message is gone before the user read it"
        assert "Cannot classify" in error.inner_text()
        pills = page.locator("#em-summary .error, #em-bars .error, #em-downloads .error")
        assert pills.count() == 0 or not any(p.is_visible() for p in pills.all()), "empty red Error pills"
        shot(page, "classify-error-stays.png")
    finally:
        page.context.close()


def test_the_review_queue_is_there_on_opening(chrome: Any, site: Any) -> None:
    server, home = site
    page = open_page(chrome, server.url)
    try:
        page.get_by_role("tab", name="Library").click()
        # the file shown, "nothing to review", or null while the queue is being worked on: a wait that
        # took null for "changed" ended before the Accept handler had run (seen once in a full run)
        shown = """() => {
            const info = document.querySelector('#em-review-info');
            if (!info) return null;  // the tab's content not rendered yet
            if (info.querySelector('.generating, .pending, [data-testid="status-tracker"]:not(.hide)')) return null;
            if (info.innerText.includes('Nothing to review')) return 'nothing to review';
            const line = info.innerText.split('\\n').find(l => l.trim().endsWith('.wav'));
            return line ? line.trim() : null;
        }"""
        first = page.wait_for_function(shown).json_value()
        assert first.endswith(".wav"), first
        page.locator("#em-review-accept").click()
        # the first Accept accepts the file shown, and the next file (or none) comes
        page.wait_for_function(
            f"(first) => {{ const now = ({shown})(); return now !== null && now !== first; }}", arg=first
        )
        from earmark.store import Database

        db = Database(home / "earmark.db")
        accepted = db.conn.execute("SELECT path FROM lib_files WHERE review_label IS NOT NULL").fetchall()
        db.close()
        assert [r[0] for r in accepted] == [first], (
            f"the first Accept should accept the file shown ({first}); accepted: {accepted}"
        )
        shot(page, "library-review-on-open.png")
    finally:
        page.context.close()


def test_an_event_from_the_monitor_plays_and_its_false_alarm_is_exported(
    chrome: Any, site: Any, tmp_path: Path
) -> None:
    server, _ = site
    page = open_page(chrome, server.url)
    try:
        page.get_by_role("tab", name="Events").click()
        page.wait_for_function("() => document.querySelector('#em-ev-table')?.innerText.includes('door.wav')")
        # the newest event is chosen: its clip and its spectrogram are shown
        page.wait_for_selector("#em-ev-player [data-testid='waveform-controls']")
        page.wait_for_selector("#em-ev-spectrogram img")
        width = page.locator("#em-ev-spectrogram img").evaluate("i => i.naturalWidth")
        assert width > 100, "the spectrogram picture is there"
        assert "beep" in page.locator("#em-ev-details").inner_text()
        page.locator("#em-ev-false").click()
        page.wait_for_function(
            "() => document.querySelector('#em-ev-saved')?.innerText.includes('false alarm')"
        )
        page.wait_for_function(
            "() => document.querySelector('#em-ev-table')?.innerText.includes('false alarm')"
        )
        out = tmp_path / "verdicts"
        page.locator("#em-ev-folder textarea, #em-ev-folder input").first.fill(str(out))
        page.locator("#em-ev-export").click()
        page.wait_for_function(
            "() => document.querySelector('#em-ev-exported')?.innerText.includes('manifest.csv')"
        )
        shot(page, "events-false-alarm.png")
    finally:
        page.context.close()
    with (out / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    # the manifest layout calibrate/fit read (tests/test_events_feedback.py runs them on such an export)
    assert [r["label"] for r in rows] == ["background"] and (out / rows[0]["path"]).is_file()


CJK_RENDERS = """(text) => {
    // draw each character; boxes (a missing font) all look the same, real glyphs do not
    const canvas = document.createElement('canvas');
    canvas.width = 40; canvas.height = 40;
    const ctx = canvas.getContext('2d', {willReadFrequently: true});
    const font = getComputedStyle(document.body).fontFamily;
    const draw = (ch) => {
        ctx.clearRect(0, 0, 40, 40);
        ctx.font = `32px ${font}`;
        ctx.fillText(ch, 2, 32);
        return Array.from(ctx.getImageData(0, 0, 40, 40).data).join(',');
    };
    const glyphs = [...text].filter(c => c.trim()).map(draw);
    const tofu = draw('\\u{10FFFD}');  // a private-use character no font has: the box
    return {distinct: new Set(glyphs).size, count: glyphs.length, boxes: glyphs.filter(g => g === tofu).length};
}"""


def test_chinese_on_every_tab(chrome: Any, site: Any) -> None:
    server, _ = site
    page = open_page(chrome, server.url, locale="zh-CN")
    try:
        tabs = page.get_by_role("tab").all_inner_texts()
        assert tabs[:4] == ["分类", "实时", "声音库", "事件"], tabs
        expected = {"分类": "提示模板", "实时": "麦克风", "声音库": "复核队列", "事件": "各标签的事件数"}
        for tab, text in expected.items():
            page.get_by_role("tab", name=tab).click()
            page.get_by_text(text).first.wait_for()
            shot(page, f"zh-{tab}.png")
        # the Events tab (shown last) labels its clip player in Chinese too
        page.locator("#em-ev-player").get_by_text("片段").first.wait_for()
        # and the Library's search table names its columns in Chinese
        page.get_by_role("tab", name="声音库").click()
        page.locator("#em-lib-results").get_by_text("路径").first.wait_for()
        rendered = page.evaluate(CJK_RENDERS, "声音库事件分类")
        assert rendered["boxes"] == 0 and rendered["distinct"] == rendered["count"], (
            f"Chinese renders as boxes (no CJK font): {rendered}"
        )
    finally:
        page.context.close()
