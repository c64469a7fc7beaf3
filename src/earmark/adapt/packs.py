"""Classifier packs: a few-shot head, its labels and thresholds, in one versioned file.

``earmark fit`` trains a head on frozen CLAP embeddings of a labelled folder
(see :mod:`earmark.adapt.fewshot`) and saves a pack. Anything that classifies can
use it instead of label texts::

    pack = load_pack("bearings.pack.json")
    prediction = pack.predict(classifier.embed("pump.wav"))      # a Prediction
    prediction = classifier.classify("pump.wav", pack=pack)       # the same

A pack's result has the same shape as a zero-shot one (scores best first,
``label`` or uncertain, per-window scores, timeline). Sounds unlike every
class fall below the pack's "none of these" cosine and come out uncertain.

File format (JSON, ``format: earmark-pack``, ``version: 1``): ``labels``,
``model`` (id it was fitted on), ``templates``, ``scale`` (logit scale),
``directions`` (classes x dim, float32 as base64), ``reject_cosine``,
``label_thresholds``, ``text`` (the model's label-text embeddings, used to
check a pack runs on the model it was fitted on) and a ``training`` summary.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..evaluate.metrics import compute_metrics
from ..scoring import build_prediction
from ..types import ClassifyOptions, Prediction
from . import fewshot
from .calibrate import calibrate, read_json_object

if TYPE_CHECKING:
    from ..classify import AudioEmbedding, Classifier

__all__ = ["ClassifierPack", "fit_pack", "load_pack", "pack_name"]

FORMAT = "earmark-pack"
VERSION = 1
# A comma keeps it from ever equalling a user label (parse_labels splits on commas).
_REJECT = "none of these, (pack reject)"


@dataclass(frozen=True, kw_only=True, eq=False)
class ClassifierPack:
    """A trained few-shot head.

    Attributes:
        labels: the classes, in column order.
        model: id of the model whose embeddings it was fitted on.
        templates: prompt templates of its label-text embeddings.
        scale: cosine -> logit multiplier (the model's logit scale).
        directions: (classes, dim) unit class directions.
        reject_cosine: "none of these" cosine (``None``: off).
        label_thresholds: calibrated per-label thresholds (may be empty).
        text: (classes, dim) the model's label-text embeddings at fit time.
        training: summary (method, examples per class, cross-validated accuracy...).
    """

    labels: tuple[str, ...]
    model: str
    templates: tuple[str, ...]
    scale: float
    directions: np.ndarray
    reject_cosine: float | None
    label_thresholds: tuple[tuple[str, float], ...] = ()
    text: np.ndarray | None = None
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.directions.shape[1])

    @cached_property
    def digest(self) -> str:
        """Identity of what the pack computes (labels, head, thresholds), not of its file or training notes.

        Stored results scored by a pack are keyed by it, so a re-fitted pack
        re-scores a library and the same pack under another name does not.
        """
        h = hashlib.sha256()
        head = [
            list(self.labels),
            self.model,
            list(self.templates),
            self.scale,
            self.reject_cosine,
            sorted(self.label_thresholds),
        ]
        h.update(json.dumps(head).encode())
        h.update(np.ascontiguousarray(self.directions, dtype="<f4").tobytes())
        return h.hexdigest()[:32]

    def window_probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(windows, classes) probabilities of L2-normalised window embeddings, as :meth:`predict` computes them.

        With a "none of these" floor the probabilities of a window unlike every class sum to well under 1.
        """
        vectors = self._checked(vectors)
        cos = vectors.astype(np.float64) @ self.directions.astype(np.float64).T
        return fewshot.probabilities(cos, self.scale, self.reject_cosine)

    def _checked(self, vectors: Any) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ConfigError(f"pack expects {self.dim}-dim embeddings from {self.model}; got {v.shape[-1]}")
        return v

    def options(self, options: ClassifyOptions | None = None) -> ClassifyOptions:
        """``options`` with the pack's thresholds under any per-label thresholds the caller gave."""
        opts = options or ClassifyOptions()
        given = dict(opts.label_thresholds)
        merged = tuple((k, v) for k, v in self.label_thresholds if k not in given) + opts.label_thresholds
        return replace(opts, label_thresholds=merged)

    def predict(self, embedding: AudioEmbedding, options: ClassifyOptions | None = None) -> Prediction:
        """Score window embeddings with the head.

        Args:
            embedding: from :meth:`Classifier.embed` (of the pack's model).
            options: threshold, top_k, aggregate; ``templates`` are not used.
                Per-label thresholds given here win over the pack's.

        Returns:
            A :class:`Prediction` over the pack's labels.
        """
        vectors = self._checked(embedding.vectors)
        opts = self.options(options)
        labels, audio, text = self.labels, vectors, self.directions
        if self.reject_cosine is not None:
            # one extra column whose "cosine" is the reject floor for every window
            labels = (*labels, _REJECT)
            audio = np.hstack([vectors, np.ones((vectors.shape[0], 1), dtype=np.float32)])
            text = np.zeros((len(labels), self.dim + 1), dtype=np.float32)
            text[:-1, :-1] = self.directions
            text[-1, -1] = self.reject_cosine
        pred = build_prediction(
            source=embedding.source,
            model=self.model,
            labels=labels,
            spans_s=embedding.spans_s,
            audio=audio,
            text=text,
            logit_scale=self.scale,
            options=opts,
            duration_s=embedding.duration_s,
            sample_rate=embedding.sample_rate,
        )
        return self._drop_reject(pred) if self.reject_cosine is not None else pred

    def _drop_reject(self, pred: Prediction) -> Prediction:
        n = len(self.labels)
        return replace(
            pred,
            labels=self.labels,
            scores=tuple(s for s in pred.scores if s.label != _REJECT),
            windows=tuple(
                replace(w, probabilities=w.probabilities[:n], cosines=w.cosines[:n]) for w in pred.windows
            ),
            timeline=tuple(s for s in pred.timeline if s.label != _REJECT),
        )

    def check(self, classifier: Classifier) -> None:
        """Raise :class:`ConfigError` unless ``classifier`` runs the model this pack was fitted on.

        Compares the model's label-text embeddings with the ones stored at fit
        time, so a renamed or moved model folder still passes and another model fails.
        """
        if self.text is None:
            return
        now = classifier.text_embeddings(self.labels, self.templates)
        if now.shape != self.text.shape or float(np.abs(now - self.text).max()) > 1e-3:
            raise ConfigError(
                f"this classifier pack was fitted on {self.model}; the loaded model ({classifier.model_id}) "
                f"computes different embeddings. Load it with --model {self.model}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the pack file."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "labels": list(self.labels),
            "model": self.model,
            "templates": list(self.templates),
            "scale": self.scale,
            "reject_cosine": self.reject_cosine,
            "label_thresholds": dict(self.label_thresholds),
            "directions": _encode(self.directions),
            "text": None if self.text is None else _encode(self.text),
            "training": self.training,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the pack file (JSON)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return out


def _encode(a: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(a, dtype="<f4")
    return {
        "dtype": "float32",
        "shape": list(data.shape),
        "base64": base64.b64encode(data.tobytes()).decode(),
    }


def _decode(d: Any, what: str, path: Path) -> np.ndarray:
    try:
        raw = base64.b64decode(d["base64"], validate=True)
        return np.frombuffer(raw, dtype="<f4").reshape(d["shape"]).astype(np.float32)
    except (KeyError, TypeError, ValueError) as ex:
        raise ConfigError(f"{path}: {what} is damaged ({ex})") from None


def pack_name(path: str | os.PathLike[str]) -> str:
    """How a pack file is named to users: ``bearings.pack.json`` -> ``bearings``."""
    name = Path(path).name
    for suffix in (".json", ".pack"):
        name = name.removesuffix(suffix)
    return name or Path(path).name


def load_pack(path: str | os.PathLike[str]) -> ClassifierPack:
    """Read a classifier pack file.

    Raises:
        ConfigError: unreadable, not a pack, a newer version, or damaged.
    """
    p = Path(path)
    doc = read_json_object(p, "classifier pack")
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{p} is not a classifier pack (no 'format: {FORMAT}')")
    if int(doc.get("version", 0)) > VERSION:
        raise ConfigError(
            f"{p} is pack version {doc['version']}; this earmark reads up to {VERSION}: upgrade it"
        )
    try:
        labels = tuple(str(x) for x in doc["labels"])
        directions = _decode(doc["directions"], "directions", p)
        pack = ClassifierPack(
            labels=labels,
            model=str(doc["model"]),
            templates=tuple(doc.get("templates") or ()),
            scale=float(doc["scale"]),
            directions=directions,
            reject_cosine=None if doc.get("reject_cosine") is None else float(doc["reject_cosine"]),
            label_thresholds=tuple(
                (str(k), float(v)) for k, v in (doc.get("label_thresholds") or {}).items()
            ),
            text=None if doc.get("text") is None else _decode(doc["text"], "text", p),
            training=dict(doc.get("training") or {}),
        )
    except (KeyError, TypeError, ValueError) as ex:
        raise ConfigError(f"{p}: classifier pack is missing or has a bad field ({ex})") from None
    if directions.shape[0] != len(labels) or len(labels) < 2:
        raise ConfigError(f"{p}: {directions.shape[0]} class directions for {len(labels)} labels")
    return pack


def fit_pack(
    x: np.ndarray,
    y: Sequence[int] | np.ndarray,
    labels: Sequence[str],
    *,
    text: np.ndarray,
    scale: float,
    model: str,
    templates: Sequence[str],
    options: fewshot.FitOptions | None = None,
    fold_ids: Sequence[int] | np.ndarray | None = None,
    zero_shot_probs: np.ndarray | None = None,
) -> ClassifierPack:
    """Train a pack on clip embeddings (pure numpy).

    Cross-validation first scores every example with a head that never saw it:
    those held-out scores set the "none of these" floor, the calibrated
    thresholds (when ``options.target_precision`` is set) and the accuracy in
    the training summary. Then the head is trained on everything.

    Args:
        x: (items, dim) clip embeddings (see :func:`earmark.adapt.fewshot.clip_vectors`).
        y: class index per item.
        labels: class labels (their texts gave ``text``).
        text: (classes, dim) label-text embeddings from the same model.
        scale: the model's logit scale.
        model: model id, recorded in the pack.
        templates: the templates ``text`` was made with.
        options: :class:`earmark.adapt.fewshot.FitOptions`.
        fold_ids: fold per item for cross-validation (default: stratified).
        zero_shot_probs: (items, classes) zero-shot probabilities, to compare in the summary.

    Raises:
        ConfigError: a class without examples, or bad options.
    """
    opts = (options or fewshot.FitOptions()).check()
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=len(labels))
    empty = [labels[int(i)] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise ConfigError(f"no examples for: {', '.join(empty)}")
    cos, folds = fewshot.cross_val_cosines(
        x, y, len(labels), text=text, scale=scale, options=opts, fold_ids=fold_ids
    )
    reject = fewshot.reject_cosine(cos, y, scale, opts.reject_quantile)
    cv_probs = fewshot.probabilities(cos, scale, reject)
    thresholds: tuple[tuple[str, float], ...] = ()
    if opts.target_precision is not None:
        thresholds = calibrate(y, cv_probs, labels, target_precision=opts.target_precision).label_thresholds()
    cv = compute_metrics(y, cv_probs, labels)
    training: dict[str, Any] = {
        "method": opts.method,
        "text_prior": opts.text_prior,
        "l2": opts.l2,
        "iterations": opts.iterations,
        "reject_quantile": opts.reject_quantile,
        "target_precision": opts.target_precision,
        "examples": {label: int(c) for label, c in zip(labels, counts, strict=True)},
        "cv_folds": len(np.unique(folds)),
        "cv_accuracy": cv.accuracy,
        "cv_macro_f1": cv.macro_f1,
        "fitted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if zero_shot_probs is not None:
        zs = compute_metrics(y, zero_shot_probs, labels)
        training.update(zero_shot_accuracy=zs.accuracy, zero_shot_macro_f1=zs.macro_f1)
    directions = fewshot.fit_directions(x, y, len(labels), text=text, scale=scale, options=opts)
    return ClassifierPack(
        labels=tuple(labels),
        model=model,
        templates=tuple(templates),
        scale=float(scale),
        directions=directions.astype(np.float32),
        reject_cosine=reject,
        label_thresholds=thresholds,
        text=np.asarray(text, dtype=np.float32),
        training=training,
    )
