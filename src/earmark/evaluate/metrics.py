"""Classification metrics from scores (pure numpy: no model, no I/O).

Everything here takes the true class index of each item and a (items, classes)
matrix of probabilities, as any scorer produces them (zero-shot, a linear
probe, a classifier pack), and returns plain numbers:

- accuracy (R@1), top-k accuracy, macro-F1, per-class precision/recall, the
  confusion matrix and the most-confused pairs, all on the arg-max answer;
- the coverage curve: as the confidence threshold rises, the share of items
  that still get an answer and the accuracy of those answers (the "only count
  answers above 0.7" view);
- deterministic stratified folds for cross-validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "ClassMetrics",
    "CoveragePoint",
    "EvalMetrics",
    "compute_metrics",
    "confusion_matrix",
    "coverage_curve",
    "most_confused",
    "stratified_folds",
    "top_k_accuracy",
]

# thresholds of the coverage table: 0, 0.05, ..., 0.95, plus 0.99
DEFAULT_THRESHOLDS: tuple[float, ...] = (*(round(0.05 * i, 2) for i in range(20)), 0.99)


@dataclass(frozen=True, kw_only=True)
class ClassMetrics:
    """One class, on the arg-max answer.

    Attributes:
        label: the class.
        precision: right answers / answers naming this class (0 when never named).
        recall: right answers / items of this class.
        f1: harmonic mean of precision and recall.
        support: items of this class.
        predicted: items answered as this class.
    """

    label: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass(frozen=True, kw_only=True)
class CoveragePoint:
    """The answers at one confidence threshold.

    Attributes:
        threshold: top probability needed to answer (below it: "uncertain").
        answered: items whose top probability is at or above the threshold.
        correct: answered items whose answer is right.
        coverage: answered / all items.
        accuracy: correct / answered (``None`` when nothing is answered).
        correct_of_all: correct / all items (uncertain counts as not right).
    """

    threshold: float
    answered: int
    correct: int
    coverage: float
    accuracy: float | None
    correct_of_all: float


@dataclass(frozen=True, kw_only=True)
class EvalMetrics:
    """Everything the report shows for one scorer on one labelled set.

    Attributes:
        labels: class names, in matrix order.
        n: items scored.
        accuracy: arg-max answer right (R@1).
        top3: true class among the 3 best (``None`` with 3 classes or fewer).
        top5: true class among the 5 best (``None`` with 5 classes or fewer).
        macro_f1: mean F1 over the classes that have items.
        per_class: one :class:`ClassMetrics` per class.
        confusion: rows true class, columns answer (arg-max), counts.
        confused_pairs: (true, answered, count) off the diagonal, most first.
        threshold: the operating threshold of the ``at_threshold`` point.
        at_threshold: coverage and accuracy at ``threshold``.
        coverage: the curve over the standard thresholds (and ``threshold``).
    """

    labels: tuple[str, ...]
    n: int
    accuracy: float
    top3: float | None
    top5: float | None
    macro_f1: float
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]
    confused_pairs: tuple[tuple[str, str, int], ...]
    threshold: float
    at_threshold: CoveragePoint
    coverage: tuple[CoveragePoint, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["confusion"] = {
            "labels": list(self.labels),
            "rows_true_columns_answer": [list(r) for r in self.confusion],
        }
        out["confused_pairs"] = [{"true": t, "answer": a, "count": c} for t, a, c in self.confused_pairs]
        out["labels"] = list(self.labels)
        return out


def _check(y_true: Sequence[int] | np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError(f"need (n,) true classes and (n, classes) scores; got {y.shape} and {p.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError("a true class index is outside the score columns")
    return y, p


def _argmax(p: np.ndarray) -> np.ndarray:
    # ties go to the first class, as in Prediction ordering
    return np.argmax(p, axis=1) if p.size else np.zeros(0, dtype=np.int64)


def top_k_accuracy(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of items whose true class is among the ``k`` highest scores (ties: earlier class first).

    Args:
        y_true: true class index per item.
        probs: (items, classes) scores.
        k: how many best classes count.
    """
    y, p = _check(y_true, probs)
    if not y.size:
        return 0.0
    # rank = number of classes strictly better, plus equal ones listed before the true class
    true_p = p[np.arange(y.size), y][:, None]
    cols = np.arange(p.shape[1])[None, :]
    rank = (p > true_p).sum(axis=1) + ((p == true_p) & (cols < y[:, None])).sum(axis=1)
    return float(np.mean(rank < k))


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n: int
) -> np.ndarray:
    """(n, n) counts: rows the true class, columns the answer."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def most_confused(cm: np.ndarray, labels: Sequence[str], limit: int = 10) -> tuple[tuple[str, str, int], ...]:
    """Off-diagonal cells of a confusion matrix, largest first (ties in matrix order).

    Args:
        cm: confusion matrix, rows true, columns answer.
        labels: class names.
        limit: most pairs to return.
    """
    cells = [
        (int(cm[i, j]), i, j) for i in range(cm.shape[0]) for j in range(cm.shape[1]) if i != j and cm[i, j]
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return tuple((labels[i], labels[j], c) for c, i, j in cells[:limit])


def coverage_curve(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> tuple[CoveragePoint, ...]:
    """Coverage and accuracy of the answers as the confidence threshold moves.

    An item is answered when its top probability is at or above the threshold,
    so coverage never rises as the threshold does.

    Args:
        y_true: true class index per item.
        probs: (items, classes) probabilities.
        thresholds: thresholds to evaluate (sorted and de-duplicated here).
    """
    y, p = _check(y_true, probs)
    top = p.max(axis=1) if p.size else np.zeros(0)
    right = _argmax(p) == y
    points = []
    for t in sorted({float(x) for x in thresholds}):
        answered = top >= t
        a, c = int(answered.sum()), int((answered & right).sum())
        points.append(
            CoveragePoint(
                threshold=round(t, 6),
                answered=a,
                correct=c,
                coverage=a / y.size if y.size else 0.0,
                accuracy=c / a if a else None,
                correct_of_all=c / y.size if y.size else 0.0,
            )
        )
    return tuple(points)


def _per_class(cm: np.ndarray, labels: Sequence[str]) -> tuple[ClassMetrics, ...]:
    out = []
    for i, label in enumerate(labels):
        tp, support, predicted = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append(
            ClassMetrics(
                label=label, precision=precision, recall=recall, f1=f1, support=support, predicted=predicted
            )
        )
    return tuple(out)


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    *,
    threshold: float = 0.7,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> EvalMetrics:
    """All report metrics for one scorer.

    Args:
        y_true: true class index per item (into ``labels``).
        probs: (items, classes) probabilities, columns in ``labels`` order.
        labels: class names.
        threshold: the operating threshold (reported on its own and added to the curve).
        thresholds: the coverage curve's thresholds.

    Returns:
        :class:`EvalMetrics`.
    """
    y, p = _check(y_true, probs)
    if p.shape[1] != len(labels):
        raise ValueError(f"{p.shape[1]} score columns for {len(labels)} labels")
    pred = _argmax(p)
    cm = confusion_matrix(y, pred, len(labels))
    per_class = _per_class(cm, labels)
    present = [c.f1 for c in per_class if c.support]
    curve = coverage_curve(y, p, (*thresholds, threshold))
    n_classes = len(labels)
    return EvalMetrics(
        labels=tuple(labels),
        n=int(y.size),
        accuracy=float(np.mean(pred == y)) if y.size else 0.0,
        top3=top_k_accuracy(y, p, 3) if n_classes > 3 else None,
        top5=top_k_accuracy(y, p, 5) if n_classes > 5 else None,
        macro_f1=float(np.mean(present)) if present else 0.0,
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        confused_pairs=most_confused(cm, labels),
        threshold=threshold,
        at_threshold=next(pt for pt in curve if pt.threshold == round(threshold, 6)),
        coverage=curve,
    )


def stratified_folds(y: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Fold number (0..k-1) per item, dealt round-robin within each class in input order.

    Deterministic (no shuffling), so the same data always splits the same way;
    each class is spread as evenly as possible over the folds.

    Args:
        y: class index per item.
        k: number of folds (at least 2).
    """
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    y = np.asarray(y, dtype=np.int64)
    folds = np.zeros(y.size, dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        # start each class where the previous one stopped, so small classes do not all pile into fold 0
        folds[idx] = (np.arange(idx.size) + offset) % k
        offset = (offset + idx.size) % k
    return folds
