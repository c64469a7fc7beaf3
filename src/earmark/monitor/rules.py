"""Alert rules: window scores in, event openings and closings out (pure logic).

Nothing here reads audio, a clock or a file: every step is given the window it
is about (stream time in seconds, and the local wall-clock time for
schedules), so the logic is tested on hand-made score sequences.

A rule alerts on some labels, scored against other labels (the background).
For each (source, rule, label):

- a window is a *hit* when the label's probability is at or above its threshold;
- an event *opens* when K of the last N windows are hits, the rule's schedule
  is active and the label is not cooling down;
- an open event is *extended* by every further hit (its peak kept);
- it *closes* once the label has not been heard for ``max_quiet_s``;
- after it closes, the label cools down for ``cooldown_s``: triggers in that
  time are suppressed (counted), so a sound gives one event, not one per window.

Windows are long (10 s) and overlap (2 s hop), so when a sound starts and stops
is estimated from how the label's probability rises and falls around the hits.
Going back from the first hit, each window that scored higher than the one
before it (by more than ``RISE``) already held part of the sound; the sound
began after the end of the window before that rising run (in the newest hop of
the first window that heard it). Symmetrically, after the last hit the
probability falls window by window; the sound ended before the start of the
last window of that falling run. A short sound gets its time right to about
one hop; a sound the model needs to hear for a while (most of a window) still
gets its start from the rise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import TYPE_CHECKING

from ..errors import RuleError

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack

__all__ = [
    "Closed",
    "Opened",
    "Rule",
    "RuleState",
    "Schedule",
    "TimeRange",
    "Window",
    "layered_thresholds",
    "parse_time_range",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RISE = 0.05  # a probability change smaller than this is noise, not the sound coming or going


@dataclass(frozen=True, kw_only=True)
class TimeRange:
    """A daily range of local time; ``end`` before ``start`` crosses midnight."""

    start: time
    end: time

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


def parse_time_range(text: str) -> TimeRange:
    """``"22:00-06:30"`` -> :class:`TimeRange`.

    Raises:
        RuleError: not ``HH:MM-HH:MM``.
    """
    try:
        a, b = (part.strip() for part in str(text).split("-"))
        return TimeRange(start=time.fromisoformat(a), end=time.fromisoformat(b))
    except ValueError:
        raise RuleError(f"time range {text!r} is not HH:MM-HH:MM (e.g. 22:00-06:30)") from None


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When a rule may open events (local time).

    Attributes:
        active: ranges when the rule is active; empty means all day.
        quiet: ranges when it is not (quiet hours), taking precedence over ``active``.
        days: weekdays (``mon``..``sun``) when it is active; empty means every day.
    """

    active: tuple[TimeRange, ...] = ()
    quiet: tuple[TimeRange, ...] = ()
    days: tuple[str, ...] = ()

    def is_active(self, when: datetime) -> bool:
        t = when.time()
        if self.days and WEEKDAYS[when.weekday()] not in self.days:
            return False
        if self.active and not any(r.contains(t) for r in self.active):
            return False
        return not any(r.contains(t) for r in self.quiet)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One alert rule.

    Attributes:
        name: names the rule in events, topics and metrics.
        labels: labels that raise events.
        against: the other labels they are scored against (background, "other").
        threshold: probability at or above which a window is a hit.
        label_thresholds: per-label thresholds replacing ``threshold``.
        k: hits needed among the last ``n`` windows to open an event.
        n: windows looked at.
        cooldown_s: after an event closes, how long the same label on the same
            source cannot open a new one.
        max_quiet_s: how long a label must go unheard before its event closes.
        schedule: when the rule may open events (``None``: always).
        sources: source names the rule applies to (empty: all).
        pack: a few-shot classifier pack scoring the window instead of label
            texts; ``labels`` and ``against`` are then its labels, and its
            "none of these" floor is background too (``against`` may be empty).
    """

    name: str
    labels: tuple[str, ...]
    against: tuple[str, ...]
    threshold: float = 0.7
    label_thresholds: tuple[tuple[str, float], ...] = ()
    k: int = 1
    n: int = 1
    cooldown_s: float = 60.0
    max_quiet_s: float = 10.0
    schedule: Schedule | None = None
    sources: tuple[str, ...] = ()
    pack: ClassifierPack | None = None

    def __post_init__(self) -> None:
        if not self.labels:
            raise RuleError(f"rule {self.name!r}: names no label to alert on")
        if self.pack is not None and set(self.candidates) != set(self.pack.labels):
            raise RuleError(
                f"rule {self.name!r}: its labels and background must be the pack's labels "
                f"({', '.join(self.pack.labels)})"
            )
        if not self.against and self.pack is None:
            raise RuleError(f"rule {self.name!r}: needs other labels to score against (against: ...)")
        clash = {x.casefold() for x in self.labels} & {x.casefold() for x in self.against}
        if clash:
            raise RuleError(
                f"rule {self.name!r}: {', '.join(sorted(clash))} is both alerted on and background"
            )
        if not 1 <= self.k <= self.n:
            raise RuleError(f"rule {self.name!r}: need 1 <= k <= n, got k={self.k}, n={self.n}")
        for label, value in ((None, self.threshold), *self.label_thresholds):
            if not 0.0 <= value <= 1.0:
                raise RuleError(
                    f"rule {self.name!r}: threshold {value} for {label or 'all labels'} is not in 0..1"
                )
        unknown = {label for label, _ in self.label_thresholds} - set(self.labels)
        if unknown:
            raise RuleError(
                f"rule {self.name!r}: thresholds for labels it does not alert on: {sorted(unknown)}"
            )
        if self.cooldown_s < 0 or self.max_quiet_s < 0:
            raise RuleError(f"rule {self.name!r}: cooldown_s and max_quiet_s cannot be negative")

    @property
    def candidates(self) -> tuple[str, ...]:
        """Every label the rule scores: alert labels, then the background."""
        return self.labels + self.against

    def threshold_for(self, label: str) -> float:
        return dict(self.label_thresholds).get(label, self.threshold)

    def applies_to(self, source: str) -> bool:
        return not self.sources or source in self.sources


def layered_thresholds(
    labels: Iterable[str], *layers: Iterable[tuple[str, float]]
) -> tuple[tuple[str, float], ...]:
    """Per-label thresholds for ``labels`` from several sources; a later layer wins over an earlier one.

    E.g. a pack's calibrated thresholds, then a thresholds file, then the rule's own
    ``thresholds:``. Thresholds for other labels are dropped (one file serves many rules).
    """
    wanted, out = set(labels), dict[str, float]()
    for layer in layers:
        out.update((label, value) for label, value in layer if label in wanted)
    return tuple(out.items())


@dataclass(frozen=True, kw_only=True)
class Window:
    """One analysed window as rules see it.

    Attributes:
        start_s: start in stream seconds.
        end_s: end in stream seconds.
        probs: label -> probability over the rule's candidates; ``None`` when
            the window was skipped (too quiet), which counts as a miss.
        local_time: wall-clock local time of the window end (for schedules).
    """

    start_s: float
    end_s: float
    probs: Mapping[str, float] | None
    local_time: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Opened:
    """An event starts: ``start_s`` is the estimated onset, ``trigger_s`` when the rule fired,
    ``first_hit_s`` the (start, end) of the first window that heard the sound."""

    rule: str
    label: str
    start_s: float
    trigger_s: float
    peak: float
    first_hit_s: tuple[float, float] | None = None


@dataclass(frozen=True, kw_only=True)
class Closed:
    """An event ends: ``end_s`` is the estimated end of the sound; ``last_hit_end_s`` the end
    of the last window that heard it (the sound is certainly over by then; clips run to it),
    ``last_hit_start_s`` its start."""

    rule: str
    label: str
    start_s: float
    end_s: float
    last_hit_end_s: float
    peak: float
    windows: int
    last_hit_start_s: float | None = None


@dataclass
class _Open:
    start_s: float
    peak: float
    last_hit: Window
    hits: int
    heard_until_s: float  # estimated end of the sound so far
    fading: bool = False  # windows since the last hit still hold less and less of the sound


@dataclass
class _LabelState:
    recent: deque[tuple[Window, bool]]
    open: _Open | None = None
    cool_until_s: float = float("-inf")
    suppressed: int = 0


@dataclass
class RuleState:
    """A rule's memory for one source; feed it windows in stream order with :meth:`step`.

    Attributes:
        rule: the rule.
        lookback: windows kept before the last ``n`` to date an onset (a window's
            length over the hop is enough: no earlier window holds the sound).
    """

    rule: Rule
    lookback: int = 6
    _labels: dict[str, _LabelState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label in self.rule.labels:
            self._labels[label] = _LabelState(recent=deque(maxlen=self.rule.n + self.lookback))

    @property
    def suppressed(self) -> int:
        """Triggers not raised because their label was cooling down."""
        return sum(s.suppressed for s in self._labels.values())

    def step(self, window: Window) -> list[Opened | Closed]:
        """Take the next window; return the events that open or close with it."""
        active = (
            self.rule.schedule is None
            or window.local_time is None
            or self.rule.schedule.is_active(window.local_time)
        )
        out: list[Opened | Closed] = []
        for label, st in self._labels.items():
            p = None if window.probs is None else float(window.probs.get(label, 0.0))
            hit = p is not None and p >= self.rule.threshold_for(label)
            prev = st.recent[-1] if st.recent else None
            st.recent.append((window, hit))
            if st.open is not None:
                out.extend(self._continue(label, st, window, hit, p, prev))
            elif hit and active:
                opened = self._maybe_open(label, st, window)
                if opened is not None:
                    out.append(opened)
        return out

    def close_all(self) -> list[Closed]:
        """Close every open event now (end of stream, lost source); forget recent windows."""
        out = []
        for label, st in self._labels.items():
            if st.open is not None:
                out.append(self._close(label, st, st.open.heard_until_s, st.open.last_hit.end_s))
            st.recent.clear()
        return out

    def _continue(
        self,
        label: str,
        st: _LabelState,
        window: Window,
        hit: bool,
        p: float | None,
        prev: tuple[Window, bool] | None,
    ) -> list[Closed]:
        ev = st.open
        assert ev is not None
        if hit:
            assert p is not None
            ev.peak, ev.hits, ev.last_hit = max(ev.peak, p), ev.hits + 1, window
            ev.heard_until_s, ev.fading = window.end_s, True
            return []
        if ev.fading and prev is not None and (prev[1] or _p(prev[0], label) - (p or 0.0) > RISE):
            # this window holds less of the sound than the last: it ended before this window began
            ev.heard_until_s = min(max(window.start_s, ev.last_hit.start_s), ev.last_hit.end_s)
            return []
        ev.fading = False
        if window.end_s - ev.heard_until_s >= self.rule.max_quiet_s:
            return [self._close(label, st, ev.heard_until_s, window.end_s)]
        return []

    def _maybe_open(self, label: str, st: _LabelState, window: Window) -> Opened | None:
        last_n = list(st.recent)[-self.rule.n :]
        hits = [w for w, h in last_n if h]
        if len(hits) < self.rule.k:
            return None
        if window.end_s < st.cool_until_s:
            st.suppressed += 1
            return None
        first = hits[0]
        history = list(st.recent)
        i = next(j for j, (w, _) in enumerate(history) if w is first)
        # walk back over the rising run: windows that already heard part of the sound
        while i > 1 and _p(history[i - 1][0], label) - _p(history[i - 2][0], label) > RISE:
            i -= 1
        start = first.start_s
        if i > 0:
            start = min(max(history[i - 1][0].end_s, first.start_s), first.end_s)
        peak = max(float(w.probs[label]) for w in hits if w.probs is not None)
        st.open = _Open(start_s=start, peak=peak, last_hit=window, hits=len(hits), heard_until_s=window.end_s)
        return Opened(
            rule=self.rule.name,
            label=label,
            start_s=start,
            trigger_s=window.end_s,
            peak=peak,
            first_hit_s=(first.start_s, first.end_s),
        )

    def _close(self, label: str, st: _LabelState, end_s: float, now_s: float) -> Closed:
        ev = st.open
        assert ev is not None
        st.open = None
        st.cool_until_s = now_s + self.rule.cooldown_s
        start, end = ev.start_s, end_s
        if end < start:  # one short sound seen by few windows: the estimates cross
            start, end = end, start
        return Closed(
            rule=self.rule.name,
            label=label,
            start_s=start,
            end_s=end,
            last_hit_end_s=ev.last_hit.end_s,
            peak=ev.peak,
            windows=ev.hits,
            last_hit_start_s=ev.last_hit.start_s,
        )


def _p(window: Window, label: str) -> float:
    return 0.0 if window.probs is None else float(window.probs.get(label, 0.0))
