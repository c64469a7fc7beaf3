"""From embeddings to a Prediction (pure numpy; no model, no I/O).

Scores follow the reference: cosine similarity x the model's logit scale, then
a softmax over the candidate labels, per window. The clip score is the mean of
the window probabilities (``max`` for detection). Values are rounded to 6
decimals so float noise far below any decision never shows in results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import timeline
from .errors import AudioError
from .types import ClassifyOptions, Prediction, Score, WindowScores

__all__ = ["build_prediction", "window_scores"]

DECIMALS = 6


def window_scores(audio: np.ndarray, text: np.ndarray, logit_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-window probabilities and cosines, both (windows, labels).

    Args:
        audio: (windows, dim) L2-normalised audio embeddings.
        text: (labels, dim) L2-normalised text embeddings.
        logit_scale: the model's multiplier (``exp(logit_scale_a)``).
    """
    cos = audio.astype(np.float64) @ text.astype(np.float64).T
    logits = cos * logit_scale
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True), cos


def build_prediction(
    *,
    source: str,
    model: str,
    labels: Sequence[str],
    spans_s: Sequence[tuple[float, float]],
    audio: np.ndarray,
    text: np.ndarray,
    logit_scale: float,
    options: ClassifyOptions,
    duration_s: float,
    sample_rate: int,
) -> Prediction:
    """Score window embeddings against label embeddings and assemble the result.

    Raises:
        AudioError: the embeddings are not finite (no result ever carries NaN).
    """
    if not np.isfinite(audio).all():
        raise AudioError(source, "gives the model non-finite values (NaN or infinite samples?)")
    probs, cos = window_scores(audio, text, logit_scale)
    reduce = np.max if options.aggregate == "max" else np.mean
    clip_p, clip_c = reduce(probs, axis=0), reduce(cos, axis=0)
    order = sorted(range(len(labels)), key=lambda j: (-round(float(clip_p[j]), DECIMALS), j))
    scores = tuple(Score(label=labels[j], probability=_r(clip_p[j]), cosine=_r(clip_c[j])) for j in order)
    windows = tuple(
        WindowScores(
            start_s=round(s, 3),
            end_s=round(e, 3),
            probabilities=tuple(_r(v) for v in probs[i]),
            cosines=tuple(_r(v) for v in cos[i]),
        )
        for i, (s, e) in enumerate(spans_s)
    )
    thresholds = [options.threshold_for(label) for label in labels]
    return Prediction(
        source=source,
        model=model,
        labels=tuple(labels),
        scores=scores,
        threshold=options.threshold,
        top_k=options.top_k,
        duration_s=duration_s,
        sample_rate=sample_rate,
        windows=windows,
        timeline=timeline.segments(labels, spans_s, probs, thresholds),
        label_thresholds=options.label_thresholds,
    )


def _r(x: float | np.floating) -> float:
    return round(float(x), DECIMALS)
