"""Per-label thresholds that reach a target precision, and the file that carries them.

For each label, look at the items the scorer names as that label (its arg-max
answer) and pick the lowest confidence threshold at which the answers above it
are right at least ``target_precision`` of the time. Lower thresholds answer
more often; this one answers as often as the labelled data allows while
keeping the wrong answers rare enough. Below its threshold a label's answer
becomes "uncertain". When every answer for a label is right, the threshold is
the lower of the least confident answer and the default: the data gives no
reason to be stricter than the default.

The thresholds file (JSON) is read by ``classify``, ``tag`` and ``monitor``
(``--thresholds FILE``) through :func:`load_thresholds`, which returns
``ClassifyOptions.label_thresholds``::

    {
      "format": "earmark-thresholds",
      "version": 1,
      "model": "laion/clap-htsat-fused",
      "templates": ["This is a sound of {label}."],
      "target_precision": 0.9,
      "default_threshold": 0.7,
      "labels": {
        "smoke alarm": {"threshold": 0.62, "status": "reached",
                        "precision": 0.95, "answered": 40, "support": 42},
        ...
      }
    }

``status`` is ``reached``; ``unreachable`` (even the most confident answers
miss the target: threshold 1.0, so the label is only named at full
confidence); or ``no data`` (never the answer in the data: the default
threshold is kept). A hand-written file may also be a plain object
``{"label": threshold, ...}``.

Pure numpy apart from reading and writing the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluate.metrics import stratified_folds

__all__ = [
    "Calibration",
    "LabelThreshold",
    "answered_mask",
    "calibrate",
    "held_out_check",
    "load_thresholds",
    "save_thresholds",
]

log = logging.getLogger("earmark")

FORMAT = "earmark-thresholds"
VERSION = 1


@dataclass(frozen=True, kw_only=True)
class LabelThreshold:
    """The calibrated threshold of one label.

    Attributes:
        threshold: answer with this label only at or above this probability.
        status: ``reached``, ``unreachable`` or ``no data``.
        precision: precision of the answers kept, on the calibration data (``None``: none kept).
        answered: answers naming this label at or above the threshold.
        support: items of this label in the data.
    """

    threshold: float
    status: str
    precision: float | None
    answered: int
    support: int


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Thresholds for every label, and what they were fitted for."""

    labels: dict[str, LabelThreshold]
    target_precision: float
    default_threshold: float

    def label_thresholds(self) -> tuple[tuple[str, float], ...]:
        """As ``ClassifyOptions.label_thresholds``."""
        return tuple((label, t.threshold) for label, t in self.labels.items())


def _one_label(
    top_p: np.ndarray, right: np.ndarray, target: float, default: float, support: int
) -> LabelThreshold:
    """Lowest cut over this label's answers whose kept answers reach ``target`` precision."""
    if top_p.size == 0:
        return LabelThreshold(
            threshold=default, status="no data", precision=None, answered=0, support=support
        )
    order = np.argsort(-top_p, kind="stable")
    p, r = top_p[order], right[order].astype(np.float64)
    precision = np.cumsum(r) / np.arange(1, p.size + 1)
    # only cut between distinct values: every answer with the same probability is kept or dropped together
    last_of_value = np.append(p[1:] != p[:-1], True)
    ok = np.flatnonzero(last_of_value & (precision >= target - 1e-12))
    if ok.size == 0:
        return LabelThreshold(
            threshold=1.0, status="unreachable", precision=None, answered=0, support=support
        )
    k = int(ok[-1])
    # every answer kept: the data shows no point where errors start, so do not raise the threshold above
    # the default just because the least confident answer happened to be high
    threshold = min(float(p[k]), default) if k == p.size - 1 else float(p[k])
    return LabelThreshold(
        threshold=threshold, status="reached", precision=float(precision[k]), answered=k + 1, support=support
    )


def calibrate(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    *,
    target_precision: float = 0.9,
    default_threshold: float = 0.7,
) -> Calibration:
    """Per-label thresholds reaching ``target_precision`` on labelled scores.

    Args:
        y_true: true class index per item.
        probs: (items, labels) probabilities, columns in ``labels`` order.
        labels: label names.
        target_precision: wanted share of right answers among the answers given, in (0, 1].
        default_threshold: kept for labels never named in the data.

    Returns:
        :class:`Calibration`.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ConfigError("target precision must be above 0 and at most 1")
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    pred, top = np.argmax(p, axis=1), p.max(axis=1)
    out = {}
    for j, label in enumerate(labels):
        mine = pred == j
        out[label] = _one_label(
            top[mine], y[mine] == j, target_precision, default_threshold, int((y == j).sum())
        )
    return Calibration(labels=out, target_precision=target_precision, default_threshold=default_threshold)


def answered_mask(probs: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Items that get an answer: top probability at or above the threshold of the top label."""
    p = np.asarray(probs, dtype=np.float64)
    pred = np.argmax(p, axis=1)
    return np.asarray(p.max(axis=1) >= np.asarray(thresholds, dtype=np.float64)[pred])


def held_out_check(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    *,
    target_precision: float,
    default_threshold: float = 0.7,
    folds: int = 5,
) -> dict[str, Any]:
    """Cross-validated calibration: fit thresholds on k-1 folds, measure on the one left out.

    Returns:
        ``precision`` and ``coverage`` of the held-out answers over all folds,
        ``answered``, ``correct``, ``n``, and ``folds`` used.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    k = max(2, min(folds, int(np.bincount(y).max()) if y.size else 2))
    fold = stratified_folds(y, k)
    answered = np.zeros(y.size, dtype=bool)
    for f in range(k):
        train, test = fold != f, fold == f
        cal = calibrate(
            y[train], p[train], labels, target_precision=target_precision, default_threshold=default_threshold
        )
        answered[test] = answered_mask(p[test], [cal.labels[label].threshold for label in labels])
    correct = answered & (np.argmax(p, axis=1) == y)
    n_ans = int(answered.sum())
    return {
        "folds": k,
        "n": int(y.size),
        "answered": n_ans,
        "correct": int(correct.sum()),
        "coverage": n_ans / y.size if y.size else 0.0,
        "precision": int(correct.sum()) / n_ans if n_ans else None,
    }


def save_thresholds(
    calibration: Calibration,
    path: str | os.PathLike[str],
    *,
    model: str,
    templates: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a thresholds file (see the module docstring for the format)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "model": model,
        "templates": list(templates),
        "target_precision": calibration.target_precision,
        "default_threshold": calibration.default_threshold,
        "labels": {label: asdict(t) for label, t in calibration.labels.items()},
        **(extra or {}),
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def load_thresholds(
    path: str | os.PathLike[str], *, model: str | None = None
) -> tuple[tuple[str, float], ...]:
    """Read a thresholds file into ``ClassifyOptions.label_thresholds``.

    Args:
        path: a file written by ``earmark calibrate`` (or a plain ``{"label": threshold}`` object).
        model: the model in use; a file calibrated on another model logs a warning.

    Raises:
        ConfigError: unreadable file, another format, a newer version, or a threshold outside 0..1.
    """
    p = Path(path)
    doc = read_json_object(p, "thresholds file")
    if "format" in doc:
        if doc["format"] != FORMAT:
            raise ConfigError(f"{p} is a {doc['format']!r} file, not a thresholds file")
        if int(doc.get("version", 0)) > VERSION:
            raise ConfigError(
                f"{p} has version {doc['version']}; this earmark reads up to {VERSION}: upgrade it"
            )
        if model and doc.get("model") and doc["model"] != model:
            log.warning("%s was calibrated on %s, not %s: its thresholds may not fit", p, doc["model"], model)
        raw = {
            k: (v.get("threshold") if isinstance(v, dict) else v) for k, v in doc.get("labels", {}).items()
        }
    else:
        raw = doc
    out = []
    for label, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{p}: threshold of {label!r} must be a number between 0 and 1, got {value!r}")
        out.append((str(label), float(value)))
    return tuple(out)


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, or a ConfigError naming ``what`` and the file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as ex:
        raise ConfigError(f"cannot read {what} {path}: {getattr(ex, 'strerror', None) or ex}") from None
    except json.JSONDecodeError as ex:
        raise ConfigError(f"{what} {path} is not valid JSON: {ex}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object")
    return doc
