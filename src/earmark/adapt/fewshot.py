"""Few-shot heads on frozen CLAP embeddings (pure numpy, deterministic).

A head is one unit vector per class, a *class direction*, scored exactly as
zero-shot scores label texts: cosine x the model's logit scale, softmax. So a
head drops into :func:`earmark.scoring.build_prediction` in place of the text
embeddings, and its probabilities mean what zero-shot ones mean.

- ``prototype``: each direction is the normalised sum of the class's clip
  embeddings plus its label-text embedding counted as ``text_prior`` examples.
  With five examples the text still matters; with a hundred the sound does.
- ``logreg``: multinomial logistic regression on those cosines, started from
  the prototypes and pulled back towards them (``l2``), trained by full-batch
  projected gradient descent with Nesterov momentum until the gradient
  vanishes (no random start or sampling: the same data gives the same head).
  Classes are weighted equally whatever their counts.

With ``text_prior=0`` and no text, ``logreg`` is the supervised linear
baseline ``earmark eval`` reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import ConfigError
from ..evaluate.metrics import stratified_folds

__all__ = [
    "FitOptions",
    "clip_vectors",
    "cross_val_cosines",
    "fit_directions",
    "probabilities",
    "reject_cosine",
]


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    """How a few-shot head is trained.

    Attributes:
        method: ``logreg`` (logistic regression from the prototypes) or ``prototype``.
        text_prior: how many examples the label text counts as (0: ignore the text).
        l2: logreg's pull back towards the prototypes (higher: closer to them).
        iterations: logreg's most gradient steps (it stops earlier once converged).
        folds: cross-validation folds for the thresholds and the training summary.
        target_precision: calibrate per-label thresholds to this precision on
            cross-validated scores (``None``: keep the default threshold).
        reject_quantile: the "none of these" floor: a sound whose cosine to
            every class direction is below what this share of the (held-out)
            training examples reach comes out uncertain. ``0`` turns it off.
    """

    method: Literal["logreg", "prototype"] = "logreg"
    text_prior: float = 1.0
    l2: float = 0.05
    iterations: int = 100
    folds: int = 5
    target_precision: float | None = None
    reject_quantile: float = 0.05

    def check(self) -> FitOptions:
        if self.method not in ("logreg", "prototype"):
            raise ConfigError("method must be 'logreg' or 'prototype'")
        if self.text_prior < 0 or self.l2 < 0 or self.iterations < 0:
            raise ConfigError("text_prior, l2 and iterations cannot be negative")
        if self.folds < 2:
            raise ConfigError("cross-validation needs at least 2 folds")
        if not 0.0 <= self.reject_quantile < 0.5:
            raise ConfigError("reject_quantile must be in [0, 0.5)")
        return self


_MOMENTUM = 0.9
_TOLERANCE = 1e-5


def _unit(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=-1, keepdims=True)
    return np.asarray(m / np.where(n > 0, n, 1.0))


def clip_vectors(window_vectors: Sequence[np.ndarray]) -> np.ndarray:
    """(files, dim): each file's window embeddings averaged and re-normalised."""
    return _unit(np.stack([np.asarray(v, dtype=np.float64).mean(axis=0) for v in window_vectors]))


def _prototypes(
    x: np.ndarray, y: np.ndarray, n_classes: int, text: np.ndarray | None, prior: float
) -> np.ndarray:
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, y, x)
    if text is not None and prior > 0:
        sums += prior * text
    # a class with no example (possible in a cross-validation split) keeps a zero direction
    return _unit(sums)


def _logreg(x: np.ndarray, y: np.ndarray, start: np.ndarray, scale: float, opts: FitOptions) -> np.ndarray:
    n_classes = start.shape[0]
    # float32: the embeddings are float32 anyway, and it halves the time of the two matmuls per step
    x32, anchor = x.astype(np.float32), start.astype(np.float32)
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    # each class weighs the same in the loss, however many examples it has
    weight = (1.0 / (counts[y] * np.count_nonzero(counts)))[:, None].astype(np.float32)
    lr = 0.5 / scale
    w, velocity = anchor.copy(), np.zeros_like(anchor)
    for _ in range(opts.iterations):
        ahead = _unit(w + _MOMENTUM * velocity)  # Nesterov: the gradient where momentum is taking us
        logits = scale * (x32 @ ahead.T)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        step = lr * (scale * ((p - onehot) * weight).T @ x32 + 2 * opts.l2 * (ahead - anchor))
        new = _unit(w + _MOMENTUM * velocity - step)  # projected: directions stay unit vectors
        velocity, w = new - w, new
        if float(np.abs(step).max()) < _TOLERANCE:  # the gradient has vanished: converged
            break
    return w.astype(np.float64)


def fit_directions(
    x: np.ndarray,
    y: Sequence[int] | np.ndarray,
    n_classes: int,
    *,
    text: np.ndarray | None,
    scale: float,
    options: FitOptions,
) -> np.ndarray:
    """Train a head: (classes, dim) unit class directions.

    Args:
        x: (items, dim) L2-normalised clip embeddings.
        y: class index per item.
        n_classes: number of classes.
        text: (classes, dim) label-text embeddings, or ``None``.
        scale: the model's logit scale (cosine -> logit).
        options: :class:`FitOptions`.
    """
    y = np.asarray(y, dtype=np.int64)
    x = np.asarray(x, dtype=np.float64)
    start = _prototypes(x, y, n_classes, text, options.text_prior)
    if options.method == "prototype":
        return start
    return _logreg(x, y, start, scale, options)


def probabilities(cos: np.ndarray, scale: float, reject: float | None) -> np.ndarray:
    """Softmax over ``scale * cos``, with an optional "none of these" column at ``reject`` (dropped)."""
    logits = scale * np.asarray(cos, dtype=np.float64)
    if reject is not None:
        logits = np.hstack([logits, np.full((logits.shape[0], 1), scale * reject)])
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    p = e / e.sum(axis=1, keepdims=True)
    return np.asarray(p[:, : cos.shape[1]])


def cross_val_cosines(
    x: np.ndarray,
    y: Sequence[int] | np.ndarray,
    n_classes: int,
    *,
    text: np.ndarray | None,
    scale: float,
    options: FitOptions,
    fold_ids: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out cosines of every item to every class direction.

    Each item is scored by a head trained without its fold.

    Args:
        fold_ids: a fold per item (e.g. ESC-50's); default: ``options.folds``
            stratified folds (fewer when the largest class is smaller).

    Returns:
        ``(cosines (items, classes), fold per item)``.
    """
    y = np.asarray(y, dtype=np.int64)
    if fold_ids is None:
        k = max(2, min(options.folds, int(np.bincount(y).max())))
        fold_ids = stratified_folds(y, k)
    folds = np.asarray(fold_ids)
    cos = np.zeros((y.size, n_classes))
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        w = fit_directions(x[train], y[train], n_classes, text=text, scale=scale, options=options)
        cos[test] = x[test] @ w.T
    return cos, folds


def reject_cosine(
    cos: np.ndarray, y: Sequence[int] | np.ndarray, scale: float, quantile: float
) -> float | None:
    """The "none of these" cosine: below the ``quantile`` of examples' cosines to their own class.

    It sits ln(9)/scale lower, so an example right at that quantile still
    keeps about 90 % of its probability against the reject column.
    """
    if quantile <= 0:
        return None
    own = np.asarray(cos)[np.arange(len(y)), np.asarray(y)]
    return float(np.quantile(own, quantile) - np.log(9.0) / scale)
