"""The monitor: sources -> the stage (windows, batches, model) -> rules -> event log -> sinks.

Threads: one per source (read, cut windows with the stage's cutter, gate,
compute features), the classifier's model runner (the stage's one batch
policy: windows from every stream share fixed-shape model calls, waiting at
most ``batch_max_wait_s`` for more), one rules thread taking windows and
markers in order, one dispatcher per sink. A window's embedding never depends
on its batch, windows (tails and short files included) are cut as for a file,
and scores are computed exactly as ``classify`` does, so a file monitored with
a 5 s hop scores like ``classify --hop-s 5`` on it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ..errors import AudioError, ConfigError
from ..paths import earmark_home
from ..scoring import DECIMALS, window_scores
from ..stage import BatchPolicy
from ..store import Database
from .boundaries import Boundaries, label_prob
from .clips import write_clip
from .config import MonitorConfig
from .events import EventLog, event_id, utc_iso
from .metrics import MonitorMetrics
from .rules import Closed, Opened, Rule, Window
from .sinks import Dispatcher, Sink
from .sources import SourceWorker
from .streams import Marker, PendingWindow, Stream

if TYPE_CHECKING:
    from ..classify import Classifier

__all__ = ["Monitor", "WindowResult"]

log = logging.getLogger("earmark")

_CLOSED_BY = {"lost": "source-lost", "ended": "end-of-stream", "stopped": "shutdown"}


@dataclass(frozen=True, kw_only=True)
class WindowResult:
    """One analysed window, for observers (``on_window``) and debugging.

    Attributes:
        source: the stream.
        start_s: start in stream seconds.
        end_s: end in stream seconds.
        level_dbfs: loudest 100 ms of the window.
        skipped: True when the loudness gate skipped it.
        probs: rule name -> label -> probability (empty when skipped).
    """

    source: str
    start_s: float
    end_s: float
    level_dbfs: float
    skipped: bool
    probs: dict[str, dict[str, float]] = field(default_factory=dict)


class Monitor:
    """Runs a :class:`MonitorConfig` with a :class:`~earmark.Classifier`.

    Args:
        config: sources, rules, sinks and options.
        classifier: the shared model.
        db: the database (default: ``config.database`` or earmark's default file).
        sinks: sinks to use instead of building them from the config (names must be unique).
        stdin: what a ``stdin`` source reads (default ``sys.stdin.buffer``).
        on_window: called from the model thread with every :class:`WindowResult`.
    """

    def __init__(
        self,
        config: MonitorConfig,
        classifier: Classifier,
        *,
        db: Database | None = None,
        sinks: list[Sink] | None = None,
        stdin: BinaryIO | None = None,
        on_window: Callable[[WindowResult], None] | None = None,
    ) -> None:
        self.config, self.clf = config, classifier
        self.rate = int(classifier.sample_rate)
        max_window = classifier.backend.window_samples / self.rate
        if config.window_s > max_window:
            raise ConfigError(
                f"window_s {config.window_s:g} is longer than the model's {max_window:g} s window"
            )
        self.db = db or Database(config.database)
        self.events = EventLog(self.db, max_pending=config.outbox.max_pending)
        self.metrics = MonitorMetrics()
        self.sinks = sinks if sinks is not None else build_sinks(config)
        self.clips_dir = config.clips.dir or earmark_home() / "clips"
        self._stdin, self._on_window = stdin, on_window
        for rule in config.rules:
            if rule.pack is not None:
                rule.pack.check(classifier)  # fitted on another model: refuse before listening
        self._text = {
            r.name: classifier.text_embeddings(r.candidates, config.templates)
            for r in config.rules
            if r.pack is None
        }
        self._queue: queue.Queue[PendingWindow | Marker] = queue.Queue()
        classifier.set_batch_policy(
            BatchPolicy(max_batch=config.batch_max_windows, max_wait_s=config.batch_max_wait_s)
        )
        self.runner = classifier.runner
        self._window_s = 0.0  # model seconds per window in the latest batch (metrics)
        self._unobserve: Callable[[], None] | None = None
        self._producing = contextlib.ExitStack()
        self.streams = [self._stream(spec) for spec in config.sources]
        self._workers: list[SourceWorker] = []
        self._dispatchers: list[Dispatcher] = []
        self._finish = threading.Event()  # model thread: drain and stop
        self._done = threading.Event()  # model thread has stopped
        self._stop_requested = threading.Event()
        self._model_thread = threading.Thread(target=self._model_loop, name="earmark-rules", daemon=True)
        self._metrics_server: Any = None
        self._failure: str | None = None
        self._zone = _zone(config.timezone)
        self._boundaries = (
            None
            if config.refine is None
            else Boundaries(config.refine, window_s=config.window_s, max_region_s=config.clips.max_s)
        )

    def _stream(self, spec: Any) -> Stream:
        rules = self.config.rules_for(spec.name)
        if not rules:
            raise ConfigError(f"source {spec.name!r}: no rule applies to it")
        c = self.config
        lookback_s = c.window_s + max(r.n for r in rules) * c.hop_s
        max_pending = 8
        keep_s = c.clips.pre_roll_s + lookback_s + max_pending * c.hop_s + 5.0
        if c.refine is not None:  # the audio around the first and the last hit, still held when refined
            keep_s += c.refine.reach_s + c.window_s + max(r.max_quiet_s for r in rules) + 2 * c.hop_s
        return Stream(
            spec,
            rules,
            rate=self.rate,
            window_s=c.window_s,
            hop_s=c.hop_s,
            out=self._queue,
            runner=self.runner,
            keep_s=keep_s,
            max_clip_s=c.clips.max_s,
            max_pending=max_pending,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start sinks, the model thread and every source."""
        stale = self.events.close_stale([k.name for k in self.sinks], lambda row: payload("end", row))
        if stale:
            log.warning("closed %d event(s) left open by an earlier run that did not shut down", stale)
        if self.config.metrics_port:
            self._metrics_server = self.metrics.serve(self.config.metrics_port, self.config.metrics_host)
        for sink in self.sinks:
            d = Dispatcher(sink, self.events, retry=self.config.outbox.retry, on_result=self._sink_result)
            self._dispatchers.append(d)
            d.start()
        self._unobserve = self.runner.observe(self._batch_done)
        self._producing.enter_context(self.runner.producing())  # live streams: short batches wait for more
        self._model_thread.start()
        for stream in self.streams:
            self._workers.append(self._worker(stream))
        for w in self._workers:
            w.start()

    def _worker(self, stream: Stream) -> SourceWorker:
        name = stream.name

        def lost(reason: str) -> None:
            self.metrics.source_up.labels(name).set(0)
            stream.lost()

        def back(gap_s: float) -> None:
            log.warning("source %s: audio is back after a %.1f s gap", name, gap_s)
            self.metrics.reconnects.labels(name).inc()
            self.metrics.source_up.labels(name).set(1)
            stream.back(gap_s)

        self.metrics.source_up.labels(name).set(1)
        return SourceWorker(
            stream.spec,
            self.rate,
            on_chunk=stream.push,
            on_lost=lost,
            on_back=back,
            stop=stream.stop,
            on_end=stream.ended,
            stdin=self._stdin,
        )

    def request_stop(self) -> None:
        """Ask :meth:`run` to shut down (safe from a signal handler)."""
        self._stop_requested.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until every source has ended and its windows are processed (or a stop is requested)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not (self._done.is_set() or self._stop_requested.is_set()):
            left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if left <= 0:
                return False
            self._done.wait(left)
        return True

    def run(self) -> dict[str, Any]:
        """Start, run until the sources end or :meth:`request_stop`, shut down; returns :meth:`summary`."""
        self.start()
        try:
            self.wait()
        finally:
            self.shutdown()
        return self.summary()

    def shutdown(self) -> None:
        """Stop sources, process what is queued, close open events, flush the outbox, stop sinks."""
        for s in self.streams:
            s.stop.set()
        for w in self._workers:
            w.join(2.0)
        self._finish.set()
        if self._model_thread.is_alive():
            self._model_thread.join()
        self._producing.close()
        if self._unobserve is not None:
            self._unobserve()
        deadline = time.monotonic() + self.config.outbox.flush_timeout_s
        for d in self._dispatchers:
            if not d.flush(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "sink %s: %d message(s) not delivered yet; they are kept for the next run",
                    d.sink.name,
                    self.events.pending(d.sink.name),
                )
        for d in self._dispatchers:
            d.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()

    def summary(self) -> dict[str, Any]:
        """Per-source counts: windows, skipped, dropped, reconnects, events."""
        m = self.metrics
        out: dict[str, Any] = {}
        for s in self.streams:
            out[s.name] = {
                "windows": int(m.value("windows_total", source=s.name)),
                "skipped_quiet": int(m.value("windows_skipped_total", source=s.name, reason="quiet")),
                "dropped": s.dropped,
                "reconnects": int(m.value("source_reconnects_total", source=s.name)),
                "events": int(
                    sum(
                        m.value("events_total", source=s.name, rule=r.name, label=x)
                        for r in s.rules
                        for x in r.labels
                    )
                ),
            }
        return out

    def errors(self) -> dict[str, str]:
        """What stopped for good, with the reason: sources (a file that cannot be read...) or the model."""
        out = {w.spec.name: w.error for w in self._workers if w.error}
        if self._failure:
            out["(model)"] = self._failure
        return out

    def _sink_result(self, sink: str, ok: bool) -> None:
        (self.metrics.delivered if ok else self.metrics.sink_failures).labels(sink).inc()

    # -- rules thread ----------------------------------------------------------------------------

    def _batch_done(self, windows: int, seconds: float) -> None:
        self._window_s = seconds / max(1, windows)

    def _model_loop(self) -> None:
        """Windows and markers in stream order: wait for each window's embedding, apply the rules."""
        ended: set[str] = set()
        try:
            while len(ended) < len(self.streams):
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if self._finish.is_set():
                        break
                    continue
                self.metrics.lag.set(self._queue.qsize())
                self._process(item, ended)
        except Exception as ex:  # reported by errors(); the run ends cleanly
            log.exception("the model failed; stopping the monitor")
            self._failure = f"{type(ex).__name__}: {ex}"
        finally:
            for s in self.streams:
                self._close_all(s, "shutdown")
            self._done.set()

    def _process(self, item: PendingWindow | Marker, ended: set[str]) -> None:
        if isinstance(item, Marker):
            self._close_all(item.stream, _CLOSED_BY[item.what])
            if item.what != "lost":
                ended.add(item.stream.name)
            return
        try:
            vector = item.vector.result() if item.vector is not None else None
            self._window(item, vector, self._window_s)
        finally:
            item.stream.done_with(item)

    def _window(self, item: PendingWindow, vector: np.ndarray | None, seconds: float) -> None:
        s, m = item.stream, self.metrics
        start_s, end_s = item.start / self.rate, item.end / self.rate
        local = datetime.fromtimestamp(s.wall(end_s), self._zone)
        result = WindowResult(
            source=s.name,
            start_s=round(start_s, 3),
            end_s=round(end_s, 3),
            level_dbfs=round(item.level_dbfs, 1),
            skipped=vector is None,
        )
        for rule in s.rules:
            probs = None
            if vector is not None:
                probs = self._probs(rule, vector)
                result.probs[rule.name] = probs
                for label in rule.labels:
                    m.scores.labels(rule.name, label).observe(probs[label])
            state = s.states[rule.name]
            before = state.suppressed
            for action in state.step(Window(start_s=start_s, end_s=end_s, probs=probs, local_time=local)):
                self._act(s, action, end_s, "quiet")
            if state.suppressed > before:
                m.suppressed.labels(s.name, rule.name).inc(state.suppressed - before)
        if vector is None:
            m.skipped.labels(s.name, "quiet").inc()
        else:
            m.windows.labels(s.name).inc()
            m.processing.labels(s.name).observe(seconds)
            m.rtf.labels(s.name).set(seconds / self.config.hop_s)
        if self._on_window is not None:
            self._on_window(result)
        for sink in self.sinks:  # live sensors (MQTT: level, last heard); never blocks
            observe = getattr(sink, "window", None)
            if observe is not None:
                try:
                    observe(result)
                except Exception:  # a sensor update must not stop detection
                    log.exception("sink %s: could not publish window sensors", sink.name)

    def _probs(self, rule: Rule, vector: np.ndarray) -> dict[str, float]:
        """label -> probability of one window for one rule: its pack's head, or its labels' texts."""
        if rule.pack is not None:
            labels, p = rule.pack.labels, rule.pack.window_probabilities(vector[None, :])
        else:
            labels = rule.candidates
            p, _ = window_scores(vector[None, :], self._text[rule.name], self.clf.backend.logit_scale)
        return {label: round(float(p[0, j]), DECIMALS) for j, label in enumerate(labels)}

    def _close_all(self, s: Stream, reason: str) -> None:
        now_s = s.windower.position / self.rate
        for state in s.states.values():
            for action in state.close_all():
                self._act(s, action, now_s, reason)

    # -- events ----------------------------------------------------------------------------------

    def _act(self, s: Stream, action: Opened | Closed, now_s: float, reason: str) -> None:
        try:
            if isinstance(action, Opened):
                self._open(s, action)
            else:
                self._close(s, action, now_s, reason)
        except Exception:  # a failed write must not stop detection on every stream
            log.exception("source %s: could not record an event of rule %s", s.name, action.rule)
        for d in self._dispatchers:
            d.wake()

    def _label_prob(self, s: Stream, rule_name: str, label: str) -> Any:
        rule = s.states[rule_name].rule
        return rule, label_prob(self.runner.embed_windows, lambda v: self._probs(rule, v)[label])

    def _refined_start(self, s: Stream, a: Opened) -> float | None:
        if self._boundaries is None:
            return None
        rule, prob = self._label_prob(s, a.rule, a.label)
        return self._boundaries.start(s.history, self.rate, prob, rule.threshold_for(a.label), a)

    def _refined_end(self, s: Stream, a: Closed, start_s: float, now_s: float) -> float | None:
        if self._boundaries is None:
            return None
        rule, prob = self._label_prob(s, a.rule, a.label)
        end = self._boundaries.end(s.history, self.rate, prob, rule.threshold_for(a.label), a, now_s)
        return None if end is None or end <= start_s else end

    def _open(self, s: Stream, a: Opened) -> None:
        refined = self._refined_start(s, a)
        start_s = a.start_s if refined is None else refined
        started_at = utc_iso(s.wall(start_s))
        eid = event_id(s.name, a.rule, a.label, started_at)
        s.open_events[(a.rule, a.label)] = eid
        if self.config.clips.enabled:
            s.history.begin(eid, int(max(0.0, start_s - self.config.clips.pre_roll_s) * self.rate))
        row = {
            "id": eid,
            "source": s.name,
            "rule": a.rule,
            "label": a.label,
            "status": "open",
            "start_s": round(start_s, 3),
            "started_at": started_at,
            "coarse_start_s": round(a.start_s, 3),
            "start_by": "coarse" if refined is None else "refined",
            "realtime": int(s.realtime),
            "peak": round(a.peak, 4),
            "windows": 0,
            "model": self.clf.model_id,
        }
        self._count_drops(self.events.open_event(row, payload("start", row), [k.name for k in self.sinks]))
        self.metrics.events.labels(s.name, a.rule, a.label).inc()
        log.info("event %s: %r on %s started at %.1f s (peak %.2f)", eid, a.label, s.name, start_s, a.peak)

    def _close(self, s: Stream, a: Closed, now_s: float, reason: str) -> None:
        eid = s.open_events.pop((a.rule, a.label))
        opened = self.events.get(eid) or {}
        start_s = float(opened.get("start_s", a.start_s))
        refined = self._refined_end(s, a, start_s, now_s)
        end_s = max(start_s, a.end_s) if refined is None else refined
        clip = self._save_clip(
            s, eid, min(max(end_s, a.end_s, a.last_hit_end_s) + self.config.clips.post_roll_s, now_s)
        )
        fields = {
            "start_s": round(start_s, 3),
            "started_at": opened.get("started_at") or utc_iso(s.wall(start_s)),
            "end_s": round(end_s, 3),
            "ended_at": utc_iso(s.wall(end_s)),
            "coarse_end_s": round(a.end_s, 3),
            "end_by": "coarse" if refined is None else "refined",
            "peak": round(a.peak, 4),
            "windows": a.windows,
            "closed_by": reason,
            "clip_path": clip,
        }
        row = {**opened, **fields}
        self._count_drops(
            self.events.close_event(eid, fields, payload("end", row), [k.name for k in self.sinks])
        )
        log.info("event %s: %r on %s ended at %.1f s (%s)", eid, a.label, s.name, end_s, reason)

    def _save_clip(self, s: Stream, eid: str, end_s: float) -> str | None:
        if not self.config.clips.enabled:
            return None
        samples = s.history.finish(eid, int(end_s * self.rate))
        if samples.size == 0:
            return None
        path = Path(self.clips_dir) / f"{eid}.{self.config.clips.format}"
        try:
            return str(write_clip(samples, self.rate, path, self.config.clips.format))
        except AudioError as ex:
            log.error("event %s: %s", eid, ex)
            return None

    def _count_drops(self, dropped: dict[str, int]) -> None:
        for sink, n in dropped.items():
            self.metrics.outbox_dropped.labels(sink).inc(n)
            log.warning("sink %s: outbox full; dropped the %d oldest message(s)", sink, n)


def payload(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """The message sinks get: event metadata only (the clip's file name; its path stays local)."""
    clip = row.get("clip_path")
    keys = ("id", "source", "rule", "label", "start_s", "end_s", "peak", "windows", "closed_by", "model")
    refined = ("start_by", "end_by", "coarse_start_s", "coarse_end_s")
    return {
        "event": kind,
        **{k: row.get(k) for k in keys},
        **{k: row[k] for k in refined if row.get(k) is not None},
        "start": row.get("started_at"),
        "end": row.get("ended_at"),
        "clock": "wall" if row.get("realtime", 1) else "stream",
        "clip": Path(clip).name if clip else None,
        "clip_path": clip,
    }


def build_sinks(config: MonitorConfig) -> list[Sink]:
    """The sinks a configuration names."""
    from .mqtt import MqttSink
    from .sinks import JsonlSink, StdoutSink, WebhookSink

    out: list[Sink] = []
    from .homeassistant import Entities

    entities = Entities(
        rules=tuple((s.name, r.name) for s in config.sources for r in config.rules_for(s.name)),
        labels=tuple(
            dict.fromkeys(
                (s.name, label)
                for s in config.sources
                for r in config.rules_for(s.name)
                for label in r.labels
            )
        ),
        sources=tuple(s.name for s in config.sources),
    )
    for spec in config.sinks:
        if spec.type == "stdout":
            out.append(StdoutSink(spec.name, fmt=spec.options or "text"))
        elif spec.type == "jsonl":
            out.append(JsonlSink(spec.name, spec.options))
        elif spec.type == "webhook":
            out.append(WebhookSink(spec.name, spec.options))
        elif spec.type == "mqtt":
            out.append(MqttSink(spec.name, spec.options, entities, rules=config.rules, hop_s=config.hop_s))
        else:
            raise ConfigError(f"sink {spec.name!r}: unknown type {spec.type!r}")
    return out


def _zone(name: str | None) -> Any:
    if name is None:
        return None
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
