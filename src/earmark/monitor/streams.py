"""One monitored stream: its clock, windows, pre-roll history and loudness gate.

The source thread pushes chunks in and cuts windows with the stage's one
cutter (:class:`earmark.stage.WindowCutter`): windows as they complete, and
the tail window when the source ends or drops, so a 7 s file or the last
seconds of a stream are scored as ``classify`` scores them. The source thread
also computes each window's features and hands them to the classifier's
:class:`~earmark.stage.ModelRunner` (the one batch policy); the window goes to
the monitor's queue as a :class:`PendingWindow` holding its future, in order
with the stream's :class:`Marker` items. Each stream may have at most
``max_pending`` windows waiting: a file read as fast as possible then waits
for the model (nothing dropped), while a live source drops the window and
counts it (it cannot pause the world).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ..stage import ModelRunner, WindowCutter
from .buffers import AudioHistory, level_dbfs
from .rules import Rule, RuleState
from .sources import SourceSpec

__all__ = ["Marker", "PendingWindow", "Stream"]

log = logging.getLogger("earmark")


@dataclass(frozen=True, kw_only=True)
class PendingWindow:
    """A window on its way through the model; ``vector`` is None when the gate skipped it."""

    stream: Stream
    start: int
    end: int
    vector: Future[np.ndarray] | None
    level_dbfs: float


@dataclass(frozen=True, kw_only=True)
class Marker:
    """Something that happened to a stream, in order with its windows: ``lost``, ``ended`` or ``stopped``."""

    stream: Stream
    what: str


class Stream:
    """State of one source shared by its source thread (audio in) and the model thread (rules, events).

    Args:
        spec: the source.
        rules: the rules that apply to it.
        rate: the model's sample rate.
        window_s: analysis window.
        hop_s: step between windows.
        out: the monitor's queue (windows and markers in order).
        runner: the model runner windows are embedded by.
        keep_s: audio history kept for pre-roll.
        max_clip_s: longest clip.
        max_pending: windows this stream may have waiting.
    """

    def __init__(
        self,
        spec: SourceSpec,
        rules: tuple[Rule, ...],
        *,
        rate: int,
        window_s: float,
        hop_s: float,
        out: queue.Queue[PendingWindow | Marker],
        runner: ModelRunner,
        keep_s: float,
        max_clip_s: float,
        max_pending: int = 8,
    ) -> None:
        self.spec, self.rules, self.rate = spec, rules, rate
        self.name = spec.name
        self.hop_s = hop_s
        self.windower = WindowCutter(window=round(window_s * rate), hop=round(hop_s * rate))
        self._runner = runner
        self.history = AudioHistory(rate=rate, keep_s=keep_s, max_clip_s=max_clip_s)
        lookback = math.ceil(window_s / hop_s) + 1  # no earlier window can hold a sound's onset
        self.states = {r.name: RuleState(rule=r, lookback=lookback) for r in rules}
        self.open_events: dict[tuple[str, str], str] = {}  # (rule, label) -> event id (model thread only)
        self._out = out
        self._slots = threading.Semaphore(max_pending)
        self._position = 0
        self._anchor = time.time()  # wall time of stream position 0
        self._started: float | None = None  # wall time of the first chunk
        self._ahead = False  # a pipe running ahead of the wall clock
        self.stop = threading.Event()
        self.dropped = 0

    # -- source thread ---------------------------------------------------------------------------

    @property
    def realtime(self) -> bool:
        """Audio arrives as it happens: event times are wall-clock times. A file read as fast
        as possible, or a pipe that delivers faster than real time, is not: its times are stream
        positions (its wall-clock times are only the moment it was read)."""
        if self.spec.kind == "file":
            return self.spec.realtime
        return not self._ahead

    def push(self, chunk: np.ndarray) -> None:
        """Take a chunk from the source: record it, cut windows, queue them."""
        if self._started is None:
            self._started = time.time()
        elif self.spec.kind == "stdin" and not self._ahead:
            # a pipe fed faster than real time (a file piped in): its clock is the stream's
            self._ahead = (self._position + chunk.size) / self.rate > time.time() - self._started + 2.0
        if (self.spec.realtime or self.spec.kind != "file") and not self._ahead:
            # live: keep the clock on the wall (drift and late chunks do not pile up), never
            # moving it back, so later audio never gets an earlier wall-clock time
            self._anchor = max(self._anchor, time.time() - (self._position + chunk.size) / self.rate)
        self.history.append(self._position, chunk)
        self._position += chunk.size
        for start, samples in self.windower.push(chunk):
            self._queue(start, samples)

    def _queue(self, start: int, samples: np.ndarray) -> None:
        level = level_dbfs(samples, rate=self.rate)
        gate = self.spec.gate_dbfs
        skip = gate is not None and level < gate
        if self.spec.kind in ("file", "stdin"):
            while not self._slots.acquire(timeout=0.2):  # a file or a pipe waits for the model
                if self.stop.is_set():
                    return
        elif not self._slots.acquire(blocking=False):
            self.dropped += 1  # live audio waits for nobody; say so once in a while
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning(
                    "source %s: the model is behind; %d window(s) dropped so far", self.name, self.dropped
                )
            return
        vector = None
        if not skip:  # features here, in the source thread, while the model works on earlier windows
            vector = self._runner.submit(self._runner.backend.window_features([samples]))[0]
        self._out.put(
            PendingWindow(stream=self, start=start, end=start + samples.size, vector=vector, level_dbfs=level)
        )

    def _tail(self) -> None:
        """The audio ended or dropped: score its tail (or the one short window) as a file's."""
        for start, samples in self.windower.finish():
            self._queue(start, samples)

    def lost(self) -> None:
        self._tail()
        self._out.put(Marker(stream=self, what="lost"))

    def back(self, gap_s: float) -> None:
        """Audio flows again after ``gap_s``: move the clock over the gap, start windows afresh."""
        self._position += int(gap_s * self.rate)
        self.windower.reset(self._position)

    def ended(self) -> None:
        """The source is done: it ended by itself, or the monitor is stopping (``stopped``)."""
        if not self.stop.is_set():
            self._tail()
        self._out.put(Marker(stream=self, what="stopped" if self.stop.is_set() else "ended"))

    # -- model thread ----------------------------------------------------------------------------

    def done_with(self, item: PendingWindow) -> None:
        self._slots.release()

    def wall(self, seconds: float) -> float:
        """Unix time of a stream time."""
        return self._anchor + seconds
