"""Events on the web: the REST router on a bare FastAPI app under real uvicorn, clips served by id
only, and the Gradio Events tab's components and callbacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from earmark import synth
from earmark.monitor.clips import write_clip
from earmark.monitor.events import EventLog, event_id, utc_iso
from earmark.store import Database
from monitor_support import free_port, wait_port

pytestmark = [pytest.mark.server]


def add_event(log: EventLog, *, label: str, source: str, t: float, clip: Path | None) -> str:
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
    log.open_event(row, {"event": "start", "id": eid}, [])
    fields = {
        "end_s": 4.0,
        "ended_at": utc_iso(t + 3),
        "closed_by": "quiet",
        "windows": 3,
        "clip_path": str(clip) if clip else None,
    }
    log.close_event(eid, fields, {}, [])
    return eid


@pytest.fixture()
def store(tmp_path: Path) -> tuple[Database, dict[str, str], Path]:
    db = Database(tmp_path / "m.db")
    log = EventLog(db)
    clips = tmp_path / "clips"
    now = time.time()
    clip = write_clip(synth.make("beep", 2.0, seed=1), 48_000, clips / "a.ogg", "ogg")
    outside = write_clip(synth.make("beep", 1.0, seed=1), 48_000, tmp_path / "elsewhere.wav", "wav")
    ids = {
        "old": add_event(log, label="hum", source="cam", t=now - 3 * 86400, clip=None),
        "glass": add_event(log, label="glass", source="cam", t=now - 600, clip=clip),
        "new": add_event(log, label="hum", source="mic", t=now - 60, clip=None),
        "outside": add_event(log, label="odd", source="mic", t=now - 30, clip=outside),
    }
    return db, ids, clips


@pytest.fixture()
def server(store: tuple[Database, dict[str, str], Path]) -> Iterator[str]:
    import uvicorn
    from fastapi import FastAPI

    from earmark.server.api import add_error_handlers
    from earmark.server.events_routes import router

    app = FastAPI()
    app.include_router(router)
    add_error_handlers(app)
    app.state.db, app.state.clips_dir = store[0], store[2]
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_port(port)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_list_filter_and_get_events(server: str, store: Any) -> None:
    _, ids, _ = store
    events = httpx.get(f"{server}/api/v1/events").json()["events"]
    assert [e["id"] for e in events] == [ids["outside"], ids["new"], ids["glass"], ids["old"]]
    assert all("clip_path" not in e for e in events)  # local paths never leave the machine
    glass = next(e for e in events if e["id"] == ids["glass"])
    assert glass["clip"] == "a.ogg" and glass["clip_url"] == f"/api/v1/events/{ids['glass']}/clip"
    assert [
        e["id"] for e in httpx.get(f"{server}/api/v1/events", params={"label": "hum"}).json()["events"]
    ] == [ids["new"], ids["old"]]
    recent = httpx.get(f"{server}/api/v1/events", params={"since": "1h", "source": "cam"}).json()["events"]
    assert [e["id"] for e in recent] == [ids["glass"]]
    assert httpx.get(f"{server}/api/v1/events", params={"since": "yesterday-ish"}).status_code == 422
    one = httpx.get(f"{server}/api/v1/events/{ids['new']}").json()
    assert one["label"] == "hum" and one["status"] == "closed" and one["clip_url"] is None
    missing = httpx.get(f"{server}/api/v1/events/ev_00000000000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_clips_are_served_by_id_only(server: str, store: Any) -> None:
    _, ids, clips = store
    r = httpx.get(f"{server}/api/v1/events/{ids['glass']}/clip")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
    assert r.content == (clips / "a.ogg").read_bytes()
    assert httpx.get(f"{server}/api/v1/events/{ids['new']}/clip").status_code == 404  # no clip
    # a recorded path outside the clips folder is refused (a tampered or foreign database)
    assert httpx.get(f"{server}/api/v1/events/{ids['outside']}/clip").status_code == 404
    for attempt in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E", "a.ogg", "ev_1%00", "..\\..\\m.db"):
        r = httpx.get(f"{server}/api/v1/events/{attempt}/clip")
        assert r.status_code in (404, 422), attempt
        assert b"root:" not in r.content and b"SQLite" not in r.content


def test_events_tab_builds_and_its_callbacks_work(store: Any) -> None:
    import gradio as gr

    from earmark.server.events_tab import build_events_tab, event_clip, events_table

    db, ids, _ = store
    with gr.Blocks() as demo, gr.Tab("Events"):
        build_events_tab(db)
    kinds = {type(b).__name__ for b in demo.blocks.values()}
    assert {"Dataframe", "Audio", "Dropdown", "Button", "Image", "Timer"} <= kinds
    log = EventLog(db)
    rows, with_clips = events_table(log, "24h", "")
    assert [r[-1] for r in rows] == [ids["outside"], ids["new"], ids["glass"]]
    assert rows[2][3] == "glass" and rows[2][4] == 3.0
    assert with_clips == [ids["outside"], ids["glass"]]
    assert len(events_table(log, "all", "hum")[0]) == 2
    (rate, samples), details = event_clip(log, ids["glass"])
    assert (
        rate == 24_000 and samples.dtype.name == "int16" and samples.size == pytest.approx(2 * rate, abs=600)
    )
    assert details["id"] == ids["glass"] and "clip_path" not in details
    assert event_clip(log, "../../etc/passwd") == (None, {})
