"""The monitor end to end with real parts: the tiny CLAP model, encoded files, a live HTTP
stream process, a mosquitto broker, a webhook receiver, SQLite, and the CLI as a subprocess.

The HTTP outage scenario needs a real 60 s outage; it runs in a background thread started
by the first test of this file and is checked by the last one, so the other tests run meanwhile.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earmark import audio, synth
from earmark.monitor.buffers import level_dbfs
from earmark.monitor.config import ClipOptions, MonitorConfig, OutboxOptions
from earmark.monitor.mqtt import MqttOptions, MqttSink
from earmark.monitor.rules import Rule
from earmark.monitor.runner import Monitor, WindowResult
from earmark.monitor.sinks import JsonlSink, RetryOptions, WebhookOptions, WebhookSink
from earmark.monitor.sources import ReconnectOptions, SourceSpec
from earmark.store import Database
from helpers import LABELS, ROOT, TINY_MODEL, encode
from monitor_support import (
    MqttCollector,
    WebhookReceiver,
    free_port,
    mosquitto,
    stream_server,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

HOP = 2.0
BEEP_AT, BEEP_S = 10.0, 12.0
# seed 4: a beep the tiny model hears in windows that hold only part of it (it is a
# 6-sound toy: for some seeds it needs a window full of beep, and no estimate can do better)
BEEP_SEED = 4


def beep_rule(**kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "beep",
        "labels": ("beep",),
        "against": tuple(x for x in LABELS if x != "beep"),
        "threshold": 0.75,
        "k": 3,
        "n": 3,
    }
    return Rule(**{**base, **kw})


def config(sources: list[SourceSpec], tmp: Path, rule: Rule | None = None, **kw: Any) -> MonitorConfig:
    return MonitorConfig(
        sources=tuple(sources),
        rules=(rule or beep_rule(),),
        hop_s=HOP,
        clips=ClipOptions(dir=tmp / "clips", format="flac"),
        **kw,
    )


@pytest.fixture(scope="module")
def beep_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silence, 12 s of beep from 10 s, silence: 40 s encoded as FLAC."""
    wave = synth.sequence([("silence", BEEP_AT), ("beep", BEEP_S), ("silence", 18.0)], seed=BEEP_SEED)
    return encode(wave, tmp_path_factory.mktemp("beep") / "beep.flac")


def file_source(path: Path, name: str = "file", **kw: Any) -> SourceSpec:
    return SourceSpec(name=name, kind="file", target=str(path), realtime=False, **kw)


# -- the HTTP outage scenario (background) ----------------------------------------------------------


class Outage(threading.Thread):
    """Two live HTTP streams; stream A stops for 5 s, then for 60 s, and comes back each time."""

    CAP_S = 4.0  # backoff cap for the test; the outages themselves are real
    SECRET = "s3cr3t-pw"

    def __init__(self, tmp: Path) -> None:
        super().__init__(daemon=True)
        self.tmp = tmp
        self.windows: list[tuple[float, str]] = []
        self.records: list[logging.LogRecord] = []
        self.marks: dict[str, float] = {}
        self.error: BaseException | None = None
        self.summary: dict[str, Any] = {}
        self.model_alive = False

    def run(self) -> None:
        handler = logging.Handler()
        handler.emit = self.records.append  # type: ignore[method-assign]
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            self._scenario()
        except BaseException as ex:  # noqa: BLE001 (reported by the checking test)
            self.error = ex
        finally:
            root.removeHandler(handler)

    def _backs(self) -> list[float]:
        return [
            r.created
            for r in self.records
            if "audio is back after" in r.getMessage() and "source a:" in r.getMessage()
        ]

    def _windows_of(self, name: str, after: float) -> int:
        return sum(1 for t, s in self.windows if s == name and t > after)

    def _scenario(self) -> None:
        from earmark import Classifier

        port_a, port_b = free_port(), free_port()
        a = stream_server(port_a, f"earmark:{self.SECRET}").start()
        b = stream_server(port_b).start()
        reconnect = ReconnectOptions(
            initial_s=1.0,
            max_s=self.CAP_S,
            healthy_s=5.0,
            watchdog_s=5.0,
            open_timeout_s=3.0,
            read_timeout_s=3.0,
        )
        sources = [
            SourceSpec(
                name="a",
                kind="url",
                target=f"http://earmark:{self.SECRET}@127.0.0.1:{port_a}/live.wav",
                reconnect=reconnect,
            ),
            SourceSpec(
                name="b", kind="url", target=f"http://127.0.0.1:{port_b}/live.wav", reconnect=reconnect
            ),
        ]
        rule = Rule(name="hum", labels=("hum",), against=tuple(x for x in LABELS if x != "hum"), k=1, n=1)
        clf = Classifier(str(TINY_MODEL), threads=1)
        # 4 s windows: a window fills sooner after each comeback (the outages are what is tested)
        monitor = Monitor(
            config(sources, self.tmp, rule, window_s=4.0),
            clf,
            db=Database(self.tmp / "outage.db"),
            sinks=[],
            on_window=lambda w: self.windows.append((time.time(), w.source)),
        )
        monitor.start()
        try:
            wait_for(lambda: self._windows_of("a", 0) >= 2, 60, "the first windows of stream a")
            for n, down_s in ((1, 5.0), (2, 60.0)):
                a.stop()
                self.marks[f"stop{n}"] = time.time()
                time.sleep(down_s)
                a.start()
                up = self.marks[f"up{n}"] = time.time()
                wait_for(
                    lambda up=up: any(t > up for t in self._backs()),
                    self.CAP_S + 30,
                    f"a back after outage {n}",
                )
                back = self.marks[f"back{n}"] = min(t for t in self._backs() if t > up)
                wait_for(
                    lambda back=back: self._windows_of("a", back) >= 1, 40, f"a window of a after outage {n}"
                )
                self.marks[f"window{n}"] = min(t for t, s in self.windows if s == "a" and t > back)
            self.model_alive = monitor._model_thread.is_alive()
        finally:
            monitor.request_stop()
            monitor.shutdown()
            self.summary = monitor.summary()
            a.stop()
            b.stop()


@pytest.fixture(scope="module", autouse=True)
def outage(tmp_path_factory: pytest.TempPathFactory) -> Outage:
    """The outage scenario runs in the background while this file's other tests run (it takes ~90 s);
    the last test of the file checks it."""
    scenario = Outage(tmp_path_factory.mktemp("outage"))
    scenario.start()
    return scenario


# -- files ----------------------------------------------------------------------------------------


def test_beep_in_a_file_gives_one_event_with_its_clip(
    classifier: Any, beep_file: Path, tmp_path: Path
) -> None:
    results: list[WindowResult] = []
    sink = JsonlSink("jsonl", tmp_path / "events.jsonl")
    monitor = Monitor(
        config([file_source(beep_file)], tmp_path),
        classifier,
        db=Database(tmp_path / "m.db"),
        sinks=[sink],
        on_window=results.append,
    )
    summary = monitor.run()

    events = monitor.events.list_events()
    assert len(events) == 1, events
    ev = events[0]
    assert (ev["label"], ev["rule"], ev["status"], ev["closed_by"]) == ("beep", "beep", "closed", "quiet")
    assert abs(ev["start_s"] - BEEP_AT) <= HOP, f"start {ev['start_s']} s, truth {BEEP_AT} s"
    assert ev["peak"] >= 0.75 and ev["end_s"] > ev["start_s"]
    # the clip: from the pre-roll before the start to past the end, holding the whole beep
    clip = audio.decode(ev["clip_path"], sample_rate=48_000)
    blocks = clip[: clip.size // 4800 * 4800].reshape(-1, 4800)
    loud = np.flatnonzero([level_dbfs(b, rate=48_000) > -30 for b in blocks]) * 0.1
    assert loud.size * 0.1 == pytest.approx(BEEP_S, abs=0.3)
    assert loud[0] == pytest.approx(BEEP_AT - (ev["start_s"] - 5.0), abs=0.15)  # 5 s pre-roll
    # the gate skipped the digital silence and counted it; every window was accounted for
    windows = int((40.0 - 10.0) / HOP) + 1
    assert summary["file"]["skipped_quiet"] >= 1
    assert summary["file"]["windows"] + summary["file"]["skipped_quiet"] == windows == len(results)
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(x["event"], x["id"]) for x in lines] == [("start", ev["id"]), ("end", ev["id"])]
    assert monitor.events.pending() == 0


def test_scores_match_classify_alone_and_batched_across_streams(
    classifier: Any, beep_file: Path, tmp_path: Path
) -> None:
    """Same engine as classify, and a window scores the same whatever shares its batch.

    Equal to float noise: torch's CPU kernels round a window's embedding differently (~1e-7)
    in batches of different sizes, which can flip the 6th decimal of a probability.
    """
    rule = beep_rule()
    got: dict[str, dict[float, tuple[float, ...]]] = {}

    def record(w: WindowResult) -> None:
        got.setdefault(w.source, {})[w.start_s] = tuple(w.probs["beep"][x] for x in rule.candidates)

    sources = [file_source(beep_file, name=f"s{i}", gate_dbfs=None) for i in range(3)]
    Monitor(
        config(sources, tmp_path, rule, batch_max_windows=8, batch_max_wait_s=0.2),
        classifier,
        db=Database(tmp_path / "m.db"),
        sinks=[],
        on_window=record,
    ).run()
    ref = classifier.classify(beep_file, list(rule.candidates), hop_s=HOP)
    expected = {w.start_s: w.probabilities for w in ref.windows}
    assert set(got) == {"s0", "s1", "s2"}
    for name, windows in got.items():
        assert len(windows) == 16
        for start, probs in windows.items():
            np.testing.assert_allclose(probs, expected[start], atol=2e-6, err_msg=f"{name} at {start} s")


def test_flood_ten_minutes_of_continuous_sound_is_one_event(classifier: Any, tmp_path: Path) -> None:
    path = encode(synth.make("beep", 600.0, seed=BEEP_SEED), tmp_path / "ten-minutes.flac")
    rule = beep_rule(k=1, n=1, cooldown_s=60.0)  # every single window is a hit
    hits: list[bool] = []
    monitor = Monitor(
        config([file_source(path)], tmp_path, rule),
        classifier,
        db=Database(tmp_path / "m.db"),
        sinks=[],
        on_window=lambda w: hits.append(w.probs["beep"]["beep"] >= 0.75),
    )
    summary = monitor.run()
    assert len(hits) == 296 and sum(hits) >= 290  # one hit per window, near enough every window
    events = monitor.events.list_events()
    assert len(events) == 1, [(e["start_s"], e["end_s"]) for e in events]
    assert summary["file"]["events"] == 1
    assert events[0]["end_s"] - events[0]["start_s"] >= 590.0 and events[0]["closed_by"] == "end-of-stream"


# -- sinks ----------------------------------------------------------------------------------------


def test_webhook_500_then_200_delivers_each_message_once(
    classifier: Any, beep_file: Path, tmp_path: Path
) -> None:
    receiver = WebhookReceiver([500, 200, 200])
    secret = "hook-key"
    sink = WebhookSink("hook", WebhookOptions(url=receiver.url, secret=secret, timeout_s=5.0))
    outbox = OutboxOptions(retry=RetryOptions(initial_s=0.5, max_s=2.0), flush_timeout_s=15.0)
    monitor = Monitor(
        config([file_source(beep_file)], tmp_path, outbox=outbox),
        classifier,
        db=Database(tmp_path / "m.db"),
        sinks=[sink],
    )
    try:
        monitor.run()
    finally:
        receiver.close()
    reqs = receiver.requests
    assert [r["status"] for r in reqs] == [500, 200, 200]
    deliveries = [r["headers"]["X-Earmark-Delivery"] for r in reqs]
    (ev,) = monitor.events.list_events()
    assert deliveries == [f"{ev['id']}:start", f"{ev['id']}:start", f"{ev['id']}:end"]
    assert reqs[1]["time"] - reqs[0]["time"] >= 0.25  # retried after a backoff, not at once
    for r in reqs:
        sig = hmac.new(secret.encode(), r["body"], hashlib.sha256).hexdigest()
        assert r["headers"]["X-Earmark-Signature"] == "sha256=" + sig
        body = json.loads(r["body"])
        assert body["id"] == ev["id"] and "clip_path" not in body and "clip_base64" not in body
    assert monitor.metrics.value("sink_failures_total", sink="hook") == 1
    assert monitor.events.pending() == 0


def _feed(writer: Any, wave: np.ndarray) -> threading.Thread:
    def run() -> None:
        writer.write(np.asarray(wave, dtype="<f4").tobytes())
        writer.flush()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_mqtt_events_arrive_and_survive_a_broker_restart(classifier: Any, tmp_path: Path) -> None:
    port = free_port()
    broker = mosquitto(port, tmp_path / "broker").start()
    collector = MqttCollector(port, "#")
    r, w = os.pipe()
    reader, writer = os.fdopen(r, "rb"), os.fdopen(w, "wb")
    spec = SourceSpec(name="pipe", kind="stdin", input_rate_hz=48_000, sample_format="f32le", gate_dbfs=None)
    sink = MqttSink(
        "mqtt", MqttOptions(port=port, homeassistant=True, publish_timeout_s=2.0), (("pipe", "beep"),)
    )
    outbox = OutboxOptions(retry=RetryOptions(initial_s=0.5, max_s=1.0))
    monitor = Monitor(
        config([spec], tmp_path, outbox=outbox),
        classifier,
        db=Database(tmp_path / "m.db"),
        sinks=[sink],
        stdin=reader,
    )
    monitor.start()
    try:
        _feed(writer, synth.sequence([("silence", BEEP_AT), ("beep", 14.0)], seed=BEEP_SEED))
        wait_for(lambda: any(e["event"] == "start" for e in collector.events()), 60, "the start message")
        # the state follows the event message on the wire: wait for it, do not race it
        wait_for(lambda: collector.topics().get("earmark/pipe/beep/state") == b"ON", 30, "the ON state")
        topics = collector.topics()
        assert topics["earmark/status"] == b"online"
        discovery = json.loads(topics["homeassistant/binary_sensor/earmark_pipe_beep/config"])
        assert discovery["state_topic"] == "earmark/pipe/beep/state" and discovery["device_class"] == "sound"

        broker.stop()  # during the event: its end happens while the broker is down
        _feed(writer, synth.make("silence", 24.0, seed=2))
        wait_for(lambda: monitor.events.list_events()[0]["status"] == "closed", 60, "the event to close")
        wait_for(
            lambda: monitor.metrics.value("sink_failures_total", sink="mqtt") >= 1, 10, "a failed attempt"
        )
        assert monitor.events.pending("mqtt") == 1  # the end message waits in the outbox

        broker.start()
        wait_for(
            lambda: any(e["event"] == "end" for e in collector.events()), 60, "the end message after restart"
        )
        time.sleep(1.5)  # time for any duplicate to show up
        (ev,) = monitor.events.list_events()
        got = [(e["event"], e["id"]) for e in collector.events()]
        assert got == [("start", ev["id"]), ("end", ev["id"])]
        assert collector.topics()["earmark/pipe/beep/state"] == b"OFF"

        # earmark vanishing without a goodbye: the broker publishes its Last Will, then it comes back
        sink._client.socket().shutdown(socket.SHUT_RDWR)
        wait_for(
            lambda: collector.statuses()[-2:] == [b"offline", b"online"], 30, "offline (will), then online"
        )
    finally:
        writer.close()
        monitor.request_stop()
        monitor.shutdown()
        collector.close()
        broker.stop()
    assert monitor.events.pending() == 0


def test_broker_down_at_start_does_not_stop_detection(
    classifier: Any, beep_file: Path, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here yet
    sink = MqttSink("mqtt", MqttOptions(port=port, publish_timeout_s=1.0))
    outbox = OutboxOptions(flush_timeout_s=0.5)
    monitor = Monitor(
        config([file_source(beep_file)], tmp_path, outbox=outbox),
        classifier,
        db=Database(tmp_path / "m.db"),
        sinks=[sink],
    )
    summary = monitor.run()
    assert summary["file"]["events"] == 1 and len(monitor.events.list_events()) == 1
    assert monitor.events.pending("mqtt") == 2  # start and end wait for the broker, in the database

    broker = mosquitto(port, tmp_path / "broker").start()
    collector = MqttCollector(port, "earmark/+/+/event")
    try:  # a later run delivers what the first one could not
        late = Monitor(
            config([file_source(tmp_path / "missing.wav")], tmp_path),
            classifier,
            db=Database(tmp_path / "m.db"),
            sinks=[MqttSink("mqtt", MqttOptions(port=port))],
        )
        late.run()
        wait_for(lambda: len(collector.events()) == 2, 20, "the two queued messages")
    finally:
        collector.close()
        broker.stop()
    assert [e["event"] for e in collector.events()] == ["start", "end"]


# -- the command line -----------------------------------------------------------------------------


def test_sigterm_closes_open_events_flushes_and_exits_0(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"""\
sources:
  - name: pipe
    stdin: {{sample_rate: 48000, format: f32le}}
rules:
  - name: beep
    labels: [beep]
    against: [hum, noise, clicks, chirp, silence]
    threshold: 0.75
    k: 3
    n: 3
clips: {{dir: {tmp_path / "clips"}, format: wav}}
database: {tmp_path / "m.db"}
threads: 1
sinks:
  - type: jsonl
    path: {tmp_path / "events.jsonl"}
""")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "earmark", "monitor", "--config", str(cfg), "-m", str(TINY_MODEL)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    try:
        wave = synth.sequence([("silence", BEEP_AT), ("beep", 14.0)], seed=BEEP_SEED)
        proc.stdin.write(wave.astype("<f4").tobytes())
        proc.stdin.flush()
        out = tmp_path / "events.jsonl"
        wait_for(lambda: out.is_file() and '"start"' in out.read_text(), 90, "the start message", step_s=0.2)
        proc.send_signal(signal.SIGTERM)  # the beep is still the last thing heard: the event is open
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert rc == 0, stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["event"] for x in lines] == ["start", "end"] and lines[0]["id"] == lines[1]["id"]
    assert lines[1]["closed_by"] == "shutdown"
    from earmark.monitor.events import EventLog

    log = EventLog(Database(tmp_path / "m.db"))
    (ev,) = log.list_events()
    assert ev["status"] == "closed" and Path(ev["clip_path"]).is_file()
    assert log.pending() == 0
    assert "pipe: windows" in stderr  # the summary


# -- the outage scenario's verdict ----------------------------------------------------------------


def test_http_stream_survives_5s_and_60s_outages(outage: Outage) -> None:
    outage.join(240)
    assert not outage.is_alive(), "the outage scenario did not finish"
    if outage.error is not None:
        raise outage.error
    m = outage.marks
    for n in (1, 2):
        # in order: the server comes back, then audio flows again, then a new window is classified
        # (the scenario's own waits bound each step: backoff cap + 30 s, then 40 s)
        assert m[f"stop{n}"] < m[f"up{n}"] < m[f"back{n}"] <= m[f"window{n}"], m
    gaps = [
        float(r.getMessage().split("after a ")[1].split(" s")[0])
        for r in outage.records
        if "source a: audio is back" in r.getMessage()
    ]
    assert len(gaps) == 2 and gaps[0] >= 5.0 and gaps[1] >= 60.0, gaps  # the gaps are logged
    assert outage.model_alive  # no crash
    assert outage.summary["a"]["reconnects"] == 2 and outage.summary["b"]["reconnects"] == 0
    # stream b never waited for a: its windows kept coming during the 60 s outage
    b_times = [t for t, s in outage.windows if s == "b" and m["stop2"] - 5 <= t <= m["up2"] + 5]
    # (about 35 windows at a 2 s hop; a stream that waited for a would have none in the outage)
    assert len(b_times) >= 10 and max(np.diff(b_times)) < 20.0
    # events: a's open event closed when it dropped; b's continuous hum stayed one event
    from earmark.monitor.events import EventLog

    events = EventLog(Database(outage.tmp / "outage.db")).list_events()
    closed_by = {s: [e["closed_by"] for e in events if e["source"] == s] for s in ("a", "b")}
    assert "source-lost" in closed_by["a"] and closed_by["b"] == ["shutdown"], closed_by
    # the password in the URL never reached a log line
    assert all(Outage.SECRET not in r.getMessage() for r in outage.records)
    assert any("***@127.0.0.1" in r.getMessage() for r in outage.records) or all(
        "earmark:" not in r.getMessage() for r in outage.records
    )
