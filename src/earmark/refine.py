"""Sub-second boundaries: re-score the audio around a coarse boundary with short windows.

Long windows (10 s) find a sound, but place its start and end only to within a
window or so: a window is a hit once it holds *enough* of the sound, wherever
in the window that is. Around a boundary, short windows (1 s by default,
repeat-padded like any clip shorter than the model's window) are scored every
``step_s``; the boundary is where the label's probability crosses the
threshold, found to ``resolution_s`` by scoring a few more windows between the
last miss and the first hit, and placed between the two window centres by
linear interpolation of the probabilities.

Which stretch of short-window hits is "the" sound: hits less than ``gap_s``
apart are one sound (a beeping alarm has gaps), and the stretch taken is the
one that overlaps the coarse window that heard the sound (the *anchor*): the
first such stretch for a start, the last for an end.

When no short window hears the label there (a sound the model needs a long
window to recognise), the refiners return ``None`` and the caller keeps its
coarse estimate. Pure logic on numpy arrays: the caller gives the audio and a
function that scores windows (the monitor's model thread, or ``classify``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import audio as _audio
from .scoring import window_scores
from .stage.windows import window_spans
from .types import Prediction, Segment

if TYPE_CHECKING:
    from .classify import Classifier

__all__ = [
    "ProbFn",
    "RefineOptions",
    "Region",
    "cut_windows",
    "refine_end",
    "refine_segments",
    "refine_start",
]

ProbFn = Callable[[list[np.ndarray]], np.ndarray]
"""Short windows -> the label's probability in each (shape ``(windows,)``)."""


@dataclass(frozen=True, kw_only=True)
class RefineOptions:
    """How boundaries are refined.

    Attributes:
        window_s: short window length (repeat-padded to the model's window).
        step_s: step of the first scan over the search region.
        resolution_s: step of the second scan between the last miss and the first hit.
        gap_s: misses shorter than this inside a sound do not split it.
        reach_s: how far outside the coarse window that heard the sound to look.
    """

    window_s: float = 1.0
    step_s: float = 1.0
    resolution_s: float = 0.25
    gap_s: float = 1.5
    reach_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.resolution_s <= self.step_s <= self.window_s:
            raise ValueError("need 0 < resolution_s <= step_s <= window_s")
        if self.gap_s < 0 or self.reach_s < 0:
            raise ValueError("gap_s and reach_s cannot be negative")


@dataclass(frozen=True, kw_only=True)
class Region:
    """Audio around a boundary: ``samples`` at ``rate``, the first at ``start_s`` (stream seconds)."""

    samples: np.ndarray
    start_s: float
    rate: int

    @property
    def end_s(self) -> float:
        return self.start_s + self.samples.size / self.rate


def cut_windows(region: Region, starts_s: Sequence[float], window_s: float) -> list[np.ndarray]:
    """The one place short windows are cut: ``window_s`` of ``region`` from each start (clipped to it)."""
    n = int(round(window_s * region.rate))
    out = []
    for t in starts_s:
        a = min(max(0, int(round((t - region.start_s) * region.rate))), max(0, region.samples.size - n))
        out.append(region.samples[a : a + n])
    return out


def _grid(region: Region, opts: RefineOptions) -> list[float]:
    """Scan starts over the region: the windows :func:`earmark.stage.windows.window_spans` gives it."""
    n = int(round(opts.window_s * region.rate))
    hop = int(round(opts.step_s * region.rate))
    return [region.start_s + a / region.rate for a, _ in window_spans(region.samples.size, n, hop)]


def _runs(starts: list[float], hits: np.ndarray, opts: RefineOptions) -> list[tuple[int, int]]:
    """Index ranges of hits, joining hits whose windows are less than ``gap_s`` apart."""
    idx = np.flatnonzero(hits)
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and starts[i] - (starts[runs[-1][1]] + opts.window_s) < opts.gap_s:
            runs[-1] = (runs[-1][0], int(i))
        else:
            runs.append((int(i), int(i)))
    return runs


def _scan(
    region: Region,
    prob: ProbFn,
    threshold: float,
    anchor: tuple[float, float],
    opts: RefineOptions,
    first: bool,
) -> tuple[list[float], np.ndarray, tuple[int, int]] | None:
    if region.samples.size < int(round(opts.window_s * region.rate)):
        return None
    starts = _grid(region, opts)
    p = np.asarray(prob(cut_windows(region, starts, opts.window_s)), dtype=np.float64)
    runs = [
        r
        for r in _runs(starts, p >= threshold, opts)
        if starts[r[0]] < anchor[1] and starts[r[1]] + opts.window_s > anchor[0]
    ]
    if not runs:
        return None
    return starts, p, runs[0] if first else runs[-1]


def _fine(
    region: Region, prob: ProbFn, opts: RefineOptions, a: float, b: float, pa: float, pb: float
) -> tuple[list[float], list[float]]:
    """Window starts from ``a`` to ``b`` every ``resolution_s``, with their probabilities."""
    between = list(np.arange(a + opts.resolution_s, b - 1e-9, opts.resolution_s))
    ps = (
        list(np.asarray(prob(cut_windows(region, between, opts.window_s)), dtype=np.float64))
        if between
        else []
    )
    return [a, *between, b], [pa, *ps, pb]


def _cross(t0: float, p0: float, t1: float, p1: float, threshold: float) -> float:
    """Where the probability crosses ``threshold`` between two window centres (linear)."""
    if p1 == p0:
        return (t0 + t1) / 2
    f = min(1.0, max(0.0, (threshold - p0) / (p1 - p0)))
    return float(t0 + f * (t1 - t0))


def refine_start(
    region: Region,
    prob: ProbFn,
    threshold: float,
    anchor: tuple[float, float],
    opts: RefineOptions = RefineOptions(),
) -> float | None:
    """When the sound heard in the ``anchor`` window (stream seconds) began, or ``None``.

    Args:
        region: audio from somewhat before the anchor to somewhat after its start.
        prob: scores short windows for the label.
        threshold: the label's threshold.
        anchor: (start, end) of the coarse window that first heard the sound.
        opts: window, steps and gap.
    """
    found = _scan(region, prob, threshold, anchor, opts, first=True)
    if found is None:
        return None
    starts, p, (i, _) = found
    half = opts.window_s / 2
    if i == 0:
        return float(starts[0])  # the sound was already there when the region began
    ts, ps = _fine(region, prob, opts, starts[i - 1], starts[i], p[i - 1], p[i])
    m = next(k for k, x in enumerate(ps) if x >= threshold)
    return _cross(ts[m - 1] + half, ps[m - 1], ts[m] + half, ps[m], threshold)


def refine_end(
    region: Region,
    prob: ProbFn,
    threshold: float,
    anchor: tuple[float, float],
    opts: RefineOptions = RefineOptions(),
) -> float | None:
    """When the sound heard in the ``anchor`` window (the last that heard it) ended, or ``None``."""
    found = _scan(region, prob, threshold, anchor, opts, first=False)
    if found is None:
        return None
    starts, p, (_, j) = found
    half = opts.window_s / 2
    if j == len(starts) - 1:
        return float(starts[j] + opts.window_s)  # still there when the region ends
    ts, ps = _fine(region, prob, opts, starts[j], starts[j + 1], p[j], p[j + 1])
    m = max(k for k, x in enumerate(ps) if x >= threshold)
    return _cross(ts[m] + half, ps[m], ts[m + 1] + half, ps[m + 1], threshold)


def refine_segments(
    segments: Sequence[Segment],
    region: Region,
    prob_for: Callable[[str], ProbFn],
    threshold_for: Callable[[str], float],
    opts: RefineOptions = RefineOptions(),
    *,
    coarse_window_s: float = 10.0,
) -> tuple[Segment, ...]:
    """A timeline's segments with sub-second starts and ends (each kept where it cannot be refined).

    Args:
        segments: the coarse timeline of the audio in ``region``.
        region: the whole audio.
        prob_for: label -> a function scoring short windows for it.
        threshold_for: label -> its threshold.
        opts: window, steps, gap and reach.
        coarse_window_s: the timeline's window: each boundary is searched within one
            such window inside the segment and ``reach_s`` outside it.
    """
    out: list[Segment] = []
    for seg in segments:
        prob, thr, anchor = prob_for(seg.label), threshold_for(seg.label), (seg.start_s, seg.end_s)
        inside = min(seg.end_s, seg.start_s + coarse_window_s)
        start = refine_start(_sub(region, seg.start_s - opts.reach_s, inside), prob, thr, anchor, opts)
        inside = max(seg.start_s, seg.end_s - coarse_window_s)
        end = refine_end(_sub(region, inside, seg.end_s + opts.reach_s), prob, thr, anchor, opts)
        a = seg.start_s if start is None else start
        b = seg.end_s if end is None else end
        if b <= a:
            a, b = seg.start_s, seg.end_s
        if out and out[-1].label == seg.label and a <= out[-1].end_s:
            a = out[-1].end_s
        out.append(replace(seg, start_s=round(float(a), 3), end_s=round(float(max(a, b)), 3)))
    return tuple(out)


def _sub(region: Region, a_s: float, b_s: float) -> Region:
    i = max(0, int(round((a_s - region.start_s) * region.rate)))
    j = min(region.samples.size, int(round((b_s - region.start_s) * region.rate)))
    return Region(
        samples=region.samples[i : max(i, j)], start_s=region.start_s + i / region.rate, rate=region.rate
    )


def options_for_resolution(resolution_s: float) -> RefineOptions:
    """Refinement to about ``resolution_s`` (``classify --resolution``): 1 s windows, a 1 s scan."""
    if resolution_s <= 0:
        raise ValueError("resolution must be positive")
    window = max(1.0, resolution_s)
    return RefineOptions(window_s=window, step_s=window, resolution_s=resolution_s)


def refine_prediction(
    classifier: Classifier,
    source: _audio.Source,
    prediction: Prediction,
    *,
    resolution_s: float = 0.25,
    input_rate: int | None = None,
    pack: Any = None,
) -> Prediction:
    """``prediction`` with its timeline refined on ``source``'s audio (decoded again), as the
    monitor refines its events; scored exactly as ``classify`` scored it (label texts or ``pack``).
    """
    if not prediction.timeline:
        return prediction
    opts = classifier.resolve_options()
    if pack is not None:
        opts = pack.options(opts)
    rate = classifier.sample_rate
    samples = _audio.decode(
        source, sample_rate=rate, input_rate=input_rate, limits=classifier.limits, name=prediction.source
    )
    labels = tuple(s.label for s in prediction.scores) if pack is None else tuple(pack.labels)
    backend = classifier.backend

    def prob_for(label: str) -> ProbFn:
        j = labels.index(label)

        def prob(windows: list[np.ndarray]) -> np.ndarray:
            vectors = classifier.runner.embed_windows(windows)
            if pack is not None:
                return np.asarray(pack.window_probabilities(vectors))[:, j]
            text = classifier.text_embeddings(labels, opts.templates)
            return window_scores(vectors, text, backend.logit_scale)[0][:, j]

        return prob

    region = Region(samples=samples, start_s=0.0, rate=rate)
    timeline = refine_segments(
        prediction.timeline,
        region,
        prob_for,
        lambda label: dict(prediction.label_thresholds).get(label, opts.threshold_for(label)),
        options_for_resolution(resolution_s),
        coarse_window_s=opts.window_s,
    )
    return replace(prediction, timeline=timeline)
