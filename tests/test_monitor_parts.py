"""Monitor parts on their own: windows, pre-roll history, loudness, raw PCM input, the stdin
watchdog, reconnect backoff, the outbox (order, retries, a full outbox), clips, metrics over HTTP."""

from __future__ import annotations

import io
import os
import random
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from earmark import audio, synth
from earmark.monitor.buffers import AudioHistory, level_dbfs
from earmark.monitor.clips import CLIP_FORMATS, write_clip
from earmark.monitor.events import EventLog, OutboxItem, parse_since
from earmark.monitor.metrics import MonitorMetrics
from earmark.monitor.sinks import Dispatcher, RetryOptions, SinkError
from earmark.monitor.sources import ReconnectOptions, SourceLost, SourceSpec, SourceWorker, open_reader
from earmark.stage import WindowCutter, window_spans
from earmark.store import Database
from monitor_support import free_port, stream_server


def test_windower_cuts_the_windows_classify_would() -> None:
    x = np.arange(1000, dtype=np.float32)
    w = WindowCutter(window=100, hop=30)
    got = []
    for i in range(0, 1000, 37):  # chunk sizes unrelated to window and hop
        got += [(s, win[0], win.size) for s, win in w.push(x[i : i + 37])]
    got += [(s, win[0], win.size) for s, win in w.finish()]  # the end of the file: its tail window
    assert [(s, float(s), e - s) for s, e in window_spans(1000, 100, 30)] == got
    w.reset(5000)  # after a gap: windows start over at the new position
    assert [s for s, _ in w.push(np.zeros(130, np.float32))] == [5000, 5030]


def test_history_keeps_the_pre_roll_and_records_clips_across_gaps() -> None:
    h = AudioHistory(rate=10, keep_s=5, max_clip_s=100)
    for pos in range(0, 100, 10):  # 10 s of audio, 1 s chunks: sample value = position
        h.append(pos, np.arange(pos, pos + 10, dtype=np.float32))
    h.begin("e", 30)  # 3 s before now is 7 s back: older than the 5 s kept -> starts where history starts
    h.append(100, np.arange(100, 110, dtype=np.float32))
    h.append(200, np.arange(200, 210, dtype=np.float32))  # after a gap
    clip = h.finish("e", 205)
    assert clip[0] >= 40 and clip[0] <= 50  # only what was still held
    assert list(clip[-5:]) == [200, 201, 202, 203, 204]  # the gap is skipped, the end respected
    assert h.recording() == []
    capped = AudioHistory(rate=10, keep_s=5, max_clip_s=2)
    capped.begin("c", 0)
    for pos in range(0, 50, 10):
        capped.append(pos, np.arange(pos, pos + 10, dtype=np.float32))
    assert list(capped.finish("c", 50)) == list(range(20))  # a long event keeps its first max_clip_s


def test_level_dbfs_finds_a_short_loud_sound_in_a_quiet_window() -> None:
    quiet = np.zeros(480_000, np.float32)
    assert level_dbfs(quiet, rate=48_000) == -120.0
    burst = quiet.copy()
    burst[96_000:100_800] = 0.5 * np.sin(np.arange(4800) / 5.0)  # 100 ms at -9 dBFS
    assert level_dbfs(burst, rate=48_000) == pytest.approx(-9.0, abs=0.3)
    assert level_dbfs(np.full(48_000, 1.0, np.float32), rate=48_000) == pytest.approx(0.0, abs=1e-6)


def test_raw_pcm_stereo_s16_is_downmixed_and_resampled(tmp_path: Path) -> None:
    mono = synth.make("hum", 2.0, seed=1, rate=16_000)
    stereo = np.stack([mono, mono], axis=1)
    raw = (stereo * 32767).astype("<i2").tobytes()
    spec = SourceSpec(name="pcm", kind="stdin", input_rate_hz=16_000, channels=2, sample_format="s16le")
    out = np.concatenate(list(open_reader(spec, 48_000, threading.Event(), stdin=io.BytesIO(raw[:-1]))))
    assert out.dtype == np.float32 and out.size == pytest.approx(3 * mono.size, abs=64)
    ref = audio.decode(mono, sample_rate=48_000, input_rate=16_000)
    n = min(out.size, ref.size) - 64
    np.testing.assert_allclose(out[:n], ref[:n], atol=2e-4)


def test_stdin_watchdog_reports_a_stall() -> None:
    r, w = os.pipe()
    spec = SourceSpec(name="pipe", kind="stdin", reconnect=ReconnectOptions(watchdog_s=0.5))
    reader = open_reader(spec, 48_000, threading.Event(), stdin=os.fdopen(r, "rb"))
    t0 = time.monotonic()
    with pytest.raises(SourceLost, match="no audio on stdin for 0.5 s"):
        next(reader)
    assert time.monotonic() - t0 < 15  # the 0.5 s watchdog, not a read that waits forever
    os.close(w)


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    opts = ReconnectOptions(initial_s=1.0, max_s=60.0)
    rng = random.Random(1)
    delays = [opts.delay_s(i, rng) for i in range(10)]
    for i, d in enumerate(delays):
        base = min(60.0, 2.0**i)
        assert base / 2 <= d <= base
    assert max(delays) <= 60.0 and delays[-1] >= 30.0


def test_a_missing_file_ends_its_worker_with_the_reason(tmp_path: Path) -> None:
    ended = threading.Event()
    spec = SourceSpec(name="f", kind="file", target=str(tmp_path / "nope.wav"))
    worker = SourceWorker(
        spec,
        48_000,
        on_chunk=lambda c: None,
        on_lost=lambda r: None,
        on_back=lambda g: None,
        stop=threading.Event(),
        on_end=ended.set,
    )
    worker.start()
    assert ended.wait(10) and worker.error is not None and "no such file" in worker.error


def test_looped_file_plays_again(tmp_path: Path) -> None:
    from helpers import encode

    path = encode(synth.make("hum", 1.0, seed=1), tmp_path / "hum.wav")
    got: list[int] = []
    stop = threading.Event()
    spec = SourceSpec(name="f", kind="file", target=str(path), realtime=False, loop=True)
    worker = SourceWorker(
        spec,
        48_000,
        on_chunk=lambda c: got.append(c.size),
        on_lost=lambda r: None,
        on_back=lambda g: None,
        stop=stop,
    )
    worker.start()
    deadline = time.monotonic() + 10
    while sum(got) < 3.5 * 48_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    worker.join(5)
    assert sum(got) >= 3.5 * 48_000


class FlakySink:
    """Fails its first ``fail`` sends, then records what it gets."""

    def __init__(self, fail: int) -> None:
        self.name, self.fail, self.got = "flaky", fail, []

    def start(self) -> None:
        pass

    def send(self, item: OutboxItem) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise SinkError("down")
        self.got.append((item.event_id, item.kind))

    def close(self) -> None:
        pass


def _queue_events(log: EventLog, n: int, sinks: list[str]) -> list[str]:
    ids = []
    for i in range(n):
        eid = f"ev_{i:04d}"
        row = {
            "id": eid,
            "source": "s",
            "rule": "r",
            "label": "x",
            "status": "open",
            "start_s": 0.0,
            "started_at": f"2025-01-01T00:00:{i:02d}.000Z",
            "peak": 0.9,
        }
        log.open_event(row, {"event": "start", "id": eid}, sinks)
        log.close_event(eid, {"end_s": 1.0}, {"event": "end", "id": eid}, sinks)
        ids.append(eid)
    return ids


def test_dispatcher_retries_in_order_and_delivers_each_message_once(tmp_path: Path) -> None:
    log = EventLog(Database(tmp_path / "m.db"))
    ids = _queue_events(log, 3, ["flaky"])
    sink = FlakySink(fail=2)
    results: list[bool] = []
    d = Dispatcher(
        sink, log, retry=RetryOptions(initial_s=0.1, max_s=0.2), on_result=lambda s, ok: results.append(ok)
    )
    d.start()
    try:
        assert d.flush(10)
    finally:
        d.stop()
    assert sink.got == [(i, k) for i in ids for k in ("start", "end")]
    assert results[:2] == [False, False] and results.count(True) == 6
    assert log.pending() == 0


def test_a_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    log = EventLog(Database(tmp_path / "m.db"), max_pending=4)
    _queue_events(log, 5, ["a", "b"])  # 10 messages per sink
    assert log.pending("a") == 4 and log.pending("b") == 4
    assert log.counter("outbox_dropped:a") == 6
    head = log.head("a")
    assert head is not None and (head.event_id, head.kind) == ("ev_0003", "start")  # the newest 4 are kept
    assert len(log.list_events(limit=100)) == 5  # the event log itself keeps everything


def test_clips_in_every_format_decode_back(tmp_path: Path) -> None:
    x = synth.make("beep", 1.5, seed=2)
    for fmt in CLIP_FORMATS:
        path = write_clip(x, 48_000, tmp_path / f"c.{fmt}", fmt)
        y = audio.decode(path, sample_rate=48_000)
        assert y.size == pytest.approx(x.size, abs=4800), fmt
        assert not list(tmp_path.glob("*.partial"))


def test_metrics_are_served_over_http() -> None:
    m = MonitorMetrics()
    m.windows.labels("cam").inc(3)
    m.scores.labels("glass", "glass breaking").observe(0.8)
    port = free_port()
    server = m.serve(port)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.shutdown()
    assert 'earmark_monitor_windows_total{source="cam"} 3.0' in text
    assert 'earmark_monitor_score_bucket{label="glass breaking",le="0.8",rule="glass"} 1.0' in text


def test_since_accepts_durations_and_dates() -> None:
    from datetime import datetime, timezone

    now = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_since("90m", now) == "2025-06-01T10:30:00.000Z"
    assert parse_since("2d", now) == "2025-05-30T12:00:00.000Z"
    assert parse_since("2025-05-01T00:00:00Z", now) == "2025-05-01T00:00:00.000Z"
    assert parse_since(None) is None
    from earmark.errors import ConfigError

    with pytest.raises(ConfigError, match="not a time"):
        parse_since("last tuesday", now)


@pytest.mark.slow
def test_a_stalled_stream_is_dropped_by_the_read_timeout_and_retried() -> None:
    port = free_port()
    server = stream_server(port).start()
    lost: list[tuple[float, str]] = []
    got: list[int] = []
    stop = threading.Event()
    opts = ReconnectOptions(initial_s=0.5, max_s=1.0, watchdog_s=3.0, read_timeout_s=1.0, open_timeout_s=2.0)
    spec = SourceSpec(name="cam", kind="url", target=f"http://127.0.0.1:{port}/stall.wav", reconnect=opts)
    worker = SourceWorker(
        spec,
        48_000,
        on_chunk=lambda c: got.append(c.size),
        on_lost=lambda r: lost.append((time.monotonic(), r)),
        on_back=lambda g: None,
        stop=stop,
    )
    t0 = time.monotonic()
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while worker.reconnects < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(5)
        server.stop()
    assert sum(got) >= 12_000  # audio from before the stall arrived
    # the read timeout noticed the stall (FFmpeg's probing of the stream takes a few seconds more)
    assert lost and lost[0][0] - t0 < 10.0 and "read failed" in lost[0][1]
    assert worker.reconnects >= 1  # and it tries again


def test_webhook_sends_a_clip_only_when_asked(tmp_path: Path) -> None:
    import base64
    import json

    from earmark.monitor.sinks import WebhookOptions, WebhookSink
    from monitor_support import WebhookReceiver

    clip = write_clip(synth.make("beep", 1.0, seed=1), 48_000, tmp_path / "ev_1.ogg", "ogg")
    payload = {"event": "end", "id": "ev_1", "clip": clip.name, "clip_path": str(clip)}
    item = OutboxItem(
        seq=1, sink="hook", event_id="ev_1", kind="end", payload=payload, attempts=0, next_at=0.0
    )
    receiver = WebhookReceiver([])
    try:
        for send_clips in (False, True):
            sink = WebhookSink("hook", WebhookOptions(url=receiver.url, send_clips=send_clips))
            sink.start()
            sink.send(item)
            sink.close()
    finally:
        receiver.close()
    plain, with_clip = (json.loads(r["body"]) for r in receiver.requests)
    assert "clip_base64" not in plain and "clip_path" not in plain and plain["clip"] == "ev_1.ogg"
    assert base64.b64decode(with_clip["clip_base64"]) == clip.read_bytes() and "clip_path" not in with_clip
