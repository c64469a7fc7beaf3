"""Verdicts on monitor events: stored, shown in the Events tab's list, exported, read by calibrate/fit."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from earmark import synth
from earmark.cli import cli
from earmark.errors import ConfigError
from earmark.evaluate.datasets import load
from earmark.monitor import feedback
from earmark.monitor.clips import write_clip
from earmark.monitor.events import EventLog, event_id, utc_iso
from earmark.server.events_tab import event_rows, event_view, export_examples, label_counts, set_verdict
from earmark.server.spectrogram import spectrogram_rgb
from earmark.store import Database


def _event(log: EventLog, label: str, t: float, clip: Path | None, source: str = "cam") -> str:
    started = utc_iso(t)
    eid = event_id(source, "r", label, started)
    row = {
        "id": eid,
        "source": source,
        "rule": "r",
        "label": label,
        "status": "open",
        "start_s": 1.0,
        "started_at": started,
        "peak": 0.9,
        "model": "tiny",
    }
    log.open_event(row, {}, [])
    log.close_event(
        eid, {"end_s": 3.0, "ended_at": utc_iso(t + 2), "clip_path": str(clip) if clip else None}, {}, []
    )
    return eid


@pytest.fixture()
def events(tmp_path: Path) -> tuple[Database, list[str]]:
    db = Database(tmp_path / "events.db")
    log = EventLog(db)
    now = time.time()
    ids = []
    for i, kind in enumerate(["beep", "beep", "hum", "beep", "hum", "beep"]):
        clip = write_clip(synth.make(kind, 2.0, seed=i), 48_000, tmp_path / "clips" / f"{i}.wav", "wav")
        # every event says "beep" (the rule's label); the hums are the monitor's false alarms
        ids.append(_event(log, "beep", now - 60 - 3600 * i, clip))
    ids.append(_event(log, "glass", now - 10, None, source="mic"))
    return db, ids


def test_verdicts_are_stored_and_shown_newest_first(events: tuple[Database, list[str]]) -> None:
    db, ids = events
    assert set_verdict(db, ids[0], "correct") == "Saved: correct."
    assert set_verdict(db, ids[2], "false_alarm", "zh-CN") == "已保存：误报。"
    rows = event_rows(db)
    assert [r[-1] for r in rows] == [ids[-1], *ids[:-1]], "newest first"
    verdicts = {r[-1]: r[5] for r in rows}
    assert verdicts[ids[0]] == "correct" and verdicts[ids[2]] == "false alarm" and verdicts[ids[1]] == ""
    assert [r[-1] for r in event_rows(db, source="mic")] == [ids[-1]]
    set_verdict(db, ids[0], None)
    assert feedback.verdict_of(db, ids[0]) is None
    with pytest.raises(ConfigError, match="no event"):
        feedback.mark_event(db, "ev_nope", "correct")
    with pytest.raises(ConfigError, match="unknown verdict"):
        feedback.mark_event(db, ids[0], "maybe")


def test_counts_per_label_per_day_and_hour(events: tuple[Database, list[str]]) -> None:
    db, _ = events
    by_day = label_counts(db, "day")
    assert by_day["headers"][1:] == ["beep", "glass"]
    assert sum(r[1] for r in by_day["data"]) == 6 and sum(r[2] for r in by_day["data"]) == 1
    by_hour = label_counts(db, "hour")
    assert len(by_hour["data"]) >= 6 and by_hour["data"][0][0].endswith(":00")


def test_the_chosen_event_has_a_player_and_a_spectrogram(events: tuple[Database, list[str]]) -> None:
    db, ids = events
    audio, picture, text = event_view(db, ids[0])
    rate, samples = audio
    assert rate == 24_000 and samples.size > rate
    assert picture.shape == (160, 640, 3) and picture.dtype == np.uint8 and picture.std() > 10
    assert "**beep**" in text
    _, no_picture, text = event_view(db, ids[-1])
    assert no_picture is None and "No clip was kept" in text


def test_a_beep_shows_as_a_horizontal_line_in_its_spectrogram() -> None:
    tone = np.sin(2 * np.pi * 1000 * np.arange(48_000) / 48_000).astype(np.float32)
    picture = spectrogram_rgb(tone, 48_000, height=100, width=50).astype(float).sum(axis=2)
    brightest = picture.mean(axis=1).argmax()
    rows_hz = np.geomspace(40, 24_000, 100)[::-1]
    assert 700 < rows_hz[brightest] < 1400, "a 1 kHz tone is one bright row at 1 kHz"


def test_exported_verdicts_are_read_by_calibrate_and_fit(
    events: tuple[Database, list[str]], tmp_path: Path, tiny_model: str
) -> None:
    db, ids = events
    for i in (0, 1, 3, 5):
        feedback.mark_event(db, ids[i], "correct")
    for i in (2, 4):
        feedback.mark_event(db, ids[i], "false_alarm")
    feedback.mark_event(db, ids[-1], "correct")  # no clip: left out, and said so
    out = tmp_path / "feedback"
    said = export_examples(db, str(out), "background")
    assert "6 example(s) (background: 2, beep: 4)" in said and "1 judged event(s) without a clip" in said
    with (out / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["label"] for r in rows) == ["background"] * 2 + ["beep"] * 4
    data = load(out / "manifest.csv")  # the loader calibrate, fit and eval use
    assert sorted(data.labels) == ["background", "beep"] and len(data.items) == 6
    # a changed verdict is there on the next export
    feedback.mark_event(db, ids[1], "false_alarm")
    summary = feedback.export_feedback(db, out)
    assert summary.examples == {"beep": 3, "background": 3}
    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "calibrate",
            str(out / "manifest.csv"),
            "-m",
            tiny_model,
            "-o",
            str(tmp_path / "t.json"),
            "--cv-folds",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.json").is_file()
    r = runner.invoke(
        cli, ["fit", str(out / "manifest.csv"), "-m", tiny_model, "-o", str(tmp_path / "a.pack.json")]
    )
    assert r.exit_code == 0, r.output
    pack = tmp_path / "a.pack.json"
    assert pack.is_file()
    # the CLI does the same
    r = runner.invoke(
        cli, ["events", "--db", str(tmp_path / "events.db"), "--export", str(tmp_path / "cli-export")]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cli-export" / "manifest.csv").read_text() == (out / "manifest.csv").read_text()
