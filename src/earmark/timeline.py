"""Window scores -> a timeline of what is heard when (pure functions, numpy only).

Windows overlap (10 s windows every 5 s), so time splits at every window edge
into pieces, each covered by one or more windows. A piece belongs to the label
with the highest mean probability over the windows covering it, provided at
least one of those windows hears that label at or above its threshold. Where
one sound gives way to another at 10 s, the piece before 10 s still leans to
the first sound and the piece after to the second, so the boundary lands at
10 s rather than at the centre of whichever window saw most of it. Adjacent
pieces with the same label merge into one segment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .types import Segment

__all__ = ["slot_scores", "segments"]


def slot_scores(
    spans_s: Sequence[tuple[float, float]], probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split time at every window edge; score each piece by the windows covering it.

    Args:
        spans_s: (start, end) seconds of each window.
        probs: window probabilities, shape (windows, labels).

    Returns:
        ``edges`` (pieces + 1,), ``mean`` and ``peak`` (pieces, labels): the mean
        and the max of the covering windows' probabilities.
    """
    starts = np.array([s for s, _ in spans_s], dtype=np.float64)
    ends = np.array([e for _, e in spans_s], dtype=np.float64)
    edges = np.unique(np.concatenate([starts, ends]))
    mids = (edges[:-1] + edges[1:]) / 2
    cover = (starts[None, :] <= mids[:, None]) & (ends[None, :] >= mids[:, None])  # (pieces, windows)
    counts = np.maximum(cover.sum(axis=1, keepdims=True), 1)
    p = probs.astype(np.float64)
    mean = (cover.astype(np.float64) @ p) / counts
    peak = np.where(cover[:, :, None], p[None, :, :], 0.0).max(axis=1)
    return edges, mean, peak


def segments(
    labels: Sequence[str],
    spans_s: Sequence[tuple[float, float]],
    probs: np.ndarray,
    thresholds: Sequence[float],
    *,
    min_duration_s: float = 0.0,
) -> tuple[Segment, ...]:
    """The timeline: merged segments of the dominant, confidently heard label, in time order.

    Args:
        labels: label names, in the column order of ``probs``.
        spans_s: (start, end) seconds of each window.
        probs: window probabilities, shape (windows, labels).
        thresholds: one threshold per label.
        min_duration_s: drop segments shorter than this.

    Returns:
        Segments; ``score`` is the highest window probability behind each.
    """
    if len(spans_s) == 0:
        return ()
    edges, mean, peak = slot_scores(spans_s, probs)
    best = mean.argmax(axis=1)
    owner = [int(j) if peak[i, j] >= thresholds[j] else -1 for i, j in enumerate(best)]
    out: list[Segment] = []
    i = 0
    while i < len(owner):
        j = owner[i]
        k = i
        while k + 1 < len(owner) and owner[k + 1] == j:
            k += 1
        start, end = float(edges[i]), float(edges[k + 1])
        if j >= 0 and end - start >= min_duration_s:
            score = float(peak[i : k + 1, j].max())
            out.append(
                Segment(label=labels[j], start_s=round(start, 3), end_s=round(end, 3), score=round(score, 6))
            )
        i = k + 1
    return tuple(out)
