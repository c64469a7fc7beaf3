"""Refined event boundaries: when an event opens or closes, short windows over the buffered audio.

The rules (:mod:`earmark.monitor.rules`) estimate a start and an end from the
long windows alone (the *coarse* estimate). When an event opens, the audio
around the first window that heard the sound is still in the stream's history,
so its start is refined (:func:`earmark.refine.refine_start`) before the start
message is queued: the alert goes out at once, with the refined start. When it
closes, the end is refined the same way around the last window that heard it.
Where the short windows do not hear the label (or the audio is gone), the
coarse estimate stays, and the event says which one it carries
(``start_by``/``end_by``: ``refined`` or ``coarse``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import numpy as np

from ..refine import ProbFn, RefineOptions, Region, refine_end, refine_start
from .buffers import AudioHistory
from .rules import Closed, Opened

__all__ = ["Boundaries", "buffered_region", "label_prob"]

log = logging.getLogger("earmark")

_keys = itertools.count()


def buffered_region(
    history: AudioHistory, rate: int, start_s: float, end_s: float, *, max_s: float
) -> Region | None:
    """The stream's audio from ``start_s`` to ``end_s`` as far as its history still holds it.

    Read through the history's clip API (a short-lived clip), so the source thread may keep appending.
    """
    start_s = max(start_s, end_s - max_s, 0.0)
    end = int(round(end_s * rate))
    start = int(round(start_s * rate))
    if end <= start:
        return None
    key = f"refine:{next(_keys)}"
    history.begin(key, start)
    samples = history.finish(key, end)
    if samples.size == 0:
        return None
    # the history ends after `end`; when it no longer reaches back to `start`, it starts later
    return Region(samples=samples, start_s=(end - samples.size) / rate, rate=rate)


class Boundaries:
    """Refines the start and end of one stream's events.

    Args:
        options: short windows, steps and reach.
        window_s: the monitor's (long) window.
        max_region_s: longest stretch of audio read for one boundary (the clip limit).
    """

    def __init__(self, options: RefineOptions, *, window_s: float, max_region_s: float) -> None:
        self.options, self.window_s, self.max_region_s = options, window_s, max_region_s

    def start(
        self, history: AudioHistory, rate: int, prob: ProbFn, threshold: float, a: Opened
    ) -> float | None:
        """The refined start of an event that just opened, or ``None`` (keep ``a.start_s``)."""
        lo, hi = a.first_hit_s if a.first_hit_s is not None else (a.start_s, a.trigger_s)
        region = buffered_region(
            history, rate, min(lo, a.start_s) - self.options.reach_s, hi, max_s=self.max_region_s
        )
        return self._run(refine_start, region, prob, threshold, (lo, hi), "start")

    def end(
        self, history: AudioHistory, rate: int, prob: ProbFn, threshold: float, a: Closed, now_s: float
    ) -> float | None:
        """The refined end of an event that just closed, or ``None`` (keep ``a.end_s``)."""
        hi = a.last_hit_end_s
        lo = a.last_hit_start_s if a.last_hit_start_s is not None else hi - self.window_s
        region = buffered_region(
            history, rate, lo, min(now_s, max(hi, a.end_s) + self.options.reach_s), max_s=self.max_region_s
        )
        return self._run(refine_end, region, prob, threshold, (lo, hi), "end")

    def _run(
        self,
        fn: Callable[..., float | None],
        region: Region | None,
        prob: ProbFn,
        threshold: float,
        anchor: tuple[float, float],
        what: str,
    ) -> float | None:
        if region is None:
            return None
        try:
            return fn(region, prob, threshold, anchor, self.options)
        except Exception:  # a refinement that fails must not lose the event: the coarse time stays
            log.exception("could not refine an event's %s; keeping the coarse estimate", what)
            return None


def label_prob(
    embed: Callable[[list[np.ndarray]], np.ndarray], probs: Callable[[np.ndarray], float]
) -> ProbFn:
    """A :data:`~earmark.refine.ProbFn` from an embedding function (the model runner) and one window's label probability."""

    def prob(windows: list[np.ndarray]) -> np.ndarray:
        if not windows:
            return np.zeros(0)
        return np.array([probs(v) for v in embed(windows)], dtype=np.float64)

    return prob
