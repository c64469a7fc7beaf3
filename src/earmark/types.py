"""Results and options: small frozen dataclasses, numpy-free, JSON-ready."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "ClassifyOptions",
    "DEFAULT_TEMPLATE",
    "MIN_HOP_S",
    "Prediction",
    "Score",
    "Segment",
    "WindowScores",
    "window_count",
]

DEFAULT_TEMPLATE = "This is a sound of {label}."

MIN_HOP_S = 0.25
"""Shortest step between windows (and so shortest window), in seconds: a smaller hop multiplies
the model work of long audio (``hop_s=0.0001`` on a 10-minute file is 6 million windows)."""


def window_count(duration_s: float, window_s: float, hop_s: float) -> int:
    """How many analysis windows ``duration_s`` of audio makes (as :func:`earmark.stage.windows.window_spans`)."""
    if duration_s <= window_s:
        return 1
    full = int((duration_s - window_s) // hop_s) + 1
    covered = (full - 1) * hop_s + window_s
    return full + (1 if covered < duration_s else 0)


@dataclass(frozen=True, kw_only=True)
class ClassifyOptions:
    """How audio is scored against labels.

    Attributes:
        threshold: below this top probability the answer is "uncertain", not a guess.
        top_k: how many best labels a result calls out (all scores are kept).
        templates: prompt templates with ``{label}``; several are averaged.
        window_s: analysis window in seconds (at most the model's 10 s; shorter
            windows are repeat-padded as the reference does).
        hop_s: step between windows of long audio, in seconds (at least ``MIN_HOP_S``,
            at most ``window_s``).
        aggregate: clip score from window probabilities: ``mean`` (what is heard
            overall) or ``max`` (detection: was it heard anywhere).
        label_thresholds: per-label thresholds (e.g. from calibration) that
            replace ``threshold`` for those labels.
    """

    threshold: float = 0.7
    top_k: int = 3
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    window_s: float = 10.0
    hop_s: float = 5.0
    aggregate: Literal["mean", "max"] = "mean"
    label_thresholds: tuple[tuple[str, float], ...] = ()

    def threshold_for(self, label: str) -> float:
        return dict(self.label_thresholds).get(label, self.threshold)


@dataclass(frozen=True, kw_only=True)
class Score:
    """One label's clip-level score.

    Attributes:
        label: the candidate label as given.
        probability: softmax over the candidates (cosine x the model's logit
            scale), aggregated over windows.
        cosine: raw cosine similarity of audio and text, aggregated the same way.
    """

    label: str
    probability: float
    cosine: float


@dataclass(frozen=True, kw_only=True)
class Segment:
    """A stretch of time where one label is heard above its threshold.

    Attributes:
        label: the label.
        start_s: start in seconds from the beginning of the audio.
        end_s: end in seconds.
        score: peak probability inside the segment.
    """

    label: str
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True, kw_only=True)
class WindowScores:
    """Scores of one analysis window; ``probabilities`` and ``cosines`` follow the label order."""

    start_s: float
    end_s: float
    probabilities: tuple[float, ...]
    cosines: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """The answer for one audio source.

    Attributes:
        source: file name or other description of the input.
        model: model id that produced it.
        labels: candidate labels in the order given.
        scores: every label's clip score, best first.
        threshold: the confidence below which the result is uncertain.
        top_k: how many best labels ``top_scores`` holds.
        duration_s: length of the audio.
        sample_rate: rate the model heard it at.
        windows: per-window scores (one window for audio of 10 s or less).
        timeline: merged segments per label above threshold.
    """

    source: str
    model: str
    labels: tuple[str, ...]
    scores: tuple[Score, ...]
    threshold: float
    top_k: int
    duration_s: float
    sample_rate: int
    windows: tuple[WindowScores, ...] = ()
    timeline: tuple[Segment, ...] = ()
    label_thresholds: tuple[tuple[str, float], ...] = field(default=(), repr=False)

    @property
    def top(self) -> Score:
        """The best-scoring label, whether or not it is confident."""
        return self.scores[0]

    @property
    def uncertain(self) -> bool:
        """True when the best label is below its threshold."""
        return self.top.probability < dict(self.label_thresholds).get(self.top.label, self.threshold)

    @property
    def label(self) -> str | None:
        """The answer: the best label, or ``None`` when uncertain."""
        return None if self.uncertain else self.top.label

    @property
    def top_scores(self) -> tuple[Score, ...]:
        return self.scores[: self.top_k]

    def to_dict(self, *, windows: bool = False) -> dict[str, Any]:
        """A JSON-ready dict. Per-window scores only when ``windows`` is true (they can be long)."""
        out: dict[str, Any] = {
            "source": self.source,
            "model": self.model,
            "duration_s": round(self.duration_s, 3),
            "sample_rate": self.sample_rate,
            "labels": list(self.labels),
            "label": self.label,
            "top": {"label": self.top.label, "probability": self.top.probability},
            "uncertain": self.uncertain,
            "threshold": self.threshold,
            "top_k": [asdict(s) for s in self.top_scores],
            "scores": {s.label: s.probability for s in self.scores},
            "cosines": {s.label: s.cosine for s in self.scores},
            "timeline": [asdict(s) for s in self.timeline],
        }
        if windows:
            out["windows"] = [asdict(w) for w in self.windows]
        return out
