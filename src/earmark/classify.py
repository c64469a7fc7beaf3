"""The classifier: audio + free-text labels -> confidence per label.

``Classifier`` is long-lived (loads the model once, caches label embeddings);
``classify()`` is the one-shot wrapper. Long audio is cut into overlapping
windows as it decodes, so a two-hour file never sits in memory whole.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import audio as _audio
from . import label_cache
from .backends import Backend, get_backend
from .errors import AudioError, ConfigError, LabelError
from .labels import check_templates, parse_labels
from .scoring import build_prediction
from .types import ClassifyOptions, Prediction

if TYPE_CHECKING:
    from .adapt.packs import ClassifierPack

__all__ = ["AudioEmbedding", "Classifier", "classify"]

log = logging.getLogger("earmark")


@dataclass(frozen=True, kw_only=True)
class AudioEmbedding:
    """Window embeddings of one source: what scoring needs, reusable for any labels.

    Attributes:
        source: name of the input.
        spans_s: (start, end) seconds of each window.
        vectors: (windows, dim) float32, L2-normalised.
        duration_s: length of the audio.
        sample_rate: rate the model heard it at.
    """

    source: str
    spans_s: tuple[tuple[float, float], ...]
    vectors: np.ndarray
    duration_s: float
    sample_rate: int


class Classifier:
    """Zero-shot audio classifier on a CLAP model.

    Args:
        model: alias, hub id or local folder; default ``$EARMARK_MODEL`` or
            ``laion/clap-htsat-fused``. A missing model raises
            :class:`~earmark.errors.UnknownModelError` saying what to do.
        device: ``auto``, ``cpu``, ``cuda``...
        threads: CPU threads for the model (default: all cores).
        options: default :class:`ClassifyOptions` for every call.
        backend: a backend name (``auto``, ``torch``, ``torch-bf16``, ``onnx``, ``onnx-int8``;
            default ``$EARMARK_BACKEND`` or ``auto``), or an already-built backend (then
            ``model``/``device``/``threads`` are unused).
        limits: audio limits for every decode.
        text_cache_size: label embeddings kept (keyed by model, template, label).
        persist_labels: also keep label embeddings on disk (:mod:`earmark.label_cache`).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        options: ClassifyOptions | None = None,
        backend: Backend | str | None = None,
        limits: _audio.AudioLimits = _audio.DEFAULT_LIMITS,
        text_cache_size: int = 4096,
        persist_labels: bool = True,
    ) -> None:
        if backend is None or isinstance(backend, str):
            backend = get_backend(backend, model=model, device=device, threads=threads)
        self.backend = backend
        self.options = options or ClassifyOptions()
        self.limits = limits
        self._text_cache: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._text_cache_size = text_cache_size
        # label embeddings on disk: a restart with known labels never loads the text tower
        self._labels = label_cache.for_backend(backend) if persist_labels else None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def sample_rate(self) -> int:
        return self.backend.sample_rate

    def resolve_options(self, options: ClassifyOptions | None = None, **overrides: Any) -> ClassifyOptions:
        """Defaults, then ``options``, then keyword overrides (``threshold=0.5``...), validated."""
        opts = options or self.options
        if overrides:
            try:
                opts = dataclasses.replace(opts, **{k: v for k, v in overrides.items() if v is not None})
            except TypeError as ex:
                raise ConfigError(str(ex)) from None
        check_templates(opts.templates)
        max_window = self.backend.window_samples / self.backend.sample_rate
        if not 0 < opts.window_s <= max_window:
            raise ConfigError(f"window_s must be between 0 and {max_window:g} s (the model's window)")
        if not 0 < opts.hop_s <= opts.window_s:
            raise ConfigError("hop_s must be positive and no longer than window_s")
        if not 0.0 <= opts.threshold <= 1.0:
            raise ConfigError("threshold must be between 0 and 1")
        if opts.top_k < 1:
            raise ConfigError("top_k must be at least 1")
        if opts.aggregate not in ("mean", "max"):
            raise ConfigError("aggregate must be 'mean' or 'max'")
        return opts

    def text_embeddings(self, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """(labels, dim) label embeddings, averaged over templates; cached per (model, template, label)."""
        model = self.model_id
        with self._lock:
            missing = [
                (t, label) for t in templates for label in labels if (model, t, label) not in self._text_cache
            ]
        if missing:
            # keep order stable and unique so the same labels always embed in the same batch
            missing = list(dict.fromkeys(missing))
            stored = self._labels.get(missing) if self._labels is not None else {}
            todo = [key for key in missing if key not in stored]  # only these need the text tower
            vectors: list[np.ndarray] = (
                list(self.backend.embed_text([t.format(label=label) for t, label in todo])) if todo else []
            )
            if todo and self._labels is not None:
                self._labels.put(zip(todo, vectors, strict=True))
            with self._lock:
                for (t, label), v in [*stored.items(), *zip(todo, vectors, strict=True)]:
                    self._text_cache[(model, t, label)] = v
                while len(self._text_cache) > self._text_cache_size:
                    self._text_cache.popitem(last=False)
        with self._lock:
            per_template = []
            for t in templates:
                rows = []
                for label in labels:
                    key = (model, t, label)
                    self._text_cache.move_to_end(key)
                    rows.append(self._text_cache[key])
                per_template.append(np.stack(rows))
        mean: np.ndarray = np.mean(per_template, axis=0)
        out: np.ndarray = (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)
        return out

    def embed(
        self,
        source: _audio.Source,
        *,
        input_rate: int | None = None,
        name: str | None = None,
        options: ClassifyOptions | None = None,
    ) -> AudioEmbedding:
        """Decode a source window by window and embed each window.

        Raises:
            AudioError: the source cannot be decoded (see :func:`earmark.audio.stream`).
        """
        opts = options or self.options
        rate = self.backend.sample_rate
        window = int(round(opts.window_s * rate))
        hop = int(round(opts.hop_s * rate))
        name = _audio.source_name(source, name)
        total = 0

        def counted() -> Iterator[np.ndarray]:
            nonlocal total
            for chunk in _audio.stream(
                source, sample_rate=rate, input_rate=input_rate, limits=self.limits, name=name
            ):
                total += chunk.size
                yield chunk

        spans: list[tuple[float, float]] = []
        vectors: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        batch_size = int(getattr(self.backend, "batch_size", 8))
        for start, samples in _audio.iter_windows(counted(), window=window, hop=hop):
            spans.append((start / rate, (start + samples.size) / rate))
            batch.append(samples)
            if len(batch) == batch_size:
                vectors.append(self.backend.embed_audio(batch))
                batch = []
        if batch:
            vectors.append(self.backend.embed_audio(batch))
        if not spans:
            raise AudioError(name, "decodes to no audio samples")
        return AudioEmbedding(
            source=name,
            spans_s=tuple(spans),
            vectors=np.concatenate(vectors),
            duration_s=total / rate,
            sample_rate=rate,
        )

    def score(
        self,
        embedding: AudioEmbedding,
        labels: str | Iterable[str] | None = None,
        *,
        options: ClassifyOptions | None = None,
        pack: ClassifierPack | None = None,
        **overrides: Any,
    ) -> Prediction:
        """Score stored or fresh window embeddings against labels (no audio needed).

        With ``pack`` (a few-shot classifier pack, :func:`earmark.adapt.packs.load_pack`)
        the pack's head scores the embeddings over the pack's labels instead of
        label texts; ``labels`` must then be ``None`` or the pack's labels.
        """
        opts = self.resolve_options(options, **overrides)
        labels_t = self._check_labels(labels, pack)
        if pack is not None:
            return pack.predict(embedding, opts)
        assert labels_t is not None
        text = self.text_embeddings(labels_t, opts.templates)
        return build_prediction(
            source=embedding.source,
            model=self.model_id,
            labels=labels_t,
            spans_s=embedding.spans_s,
            audio=embedding.vectors,
            text=text,
            logit_scale=self.backend.logit_scale,
            options=opts,
            duration_s=embedding.duration_s,
            sample_rate=embedding.sample_rate,
        )

    def _check_labels(
        self, labels: str | Iterable[str] | None, pack: ClassifierPack | None
    ) -> tuple[str, ...] | None:
        """Parsed labels; with a pack, ``None`` after checking the pack fits this model."""
        if pack is None:
            if labels is None:
                raise LabelError("no labels given (and no classifier pack)")
            return parse_labels(labels)
        if labels is not None and set(parse_labels(labels)) != set(pack.labels):
            raise LabelError(
                "a classifier pack scores its own labels (" + ", ".join(pack.labels) + "); "
                "leave the labels out or give exactly those"
            )
        pack.check(self)
        return None

    def classify(
        self,
        source: _audio.Source,
        labels: str | Iterable[str] | None = None,
        *,
        input_rate: int | None = None,
        name: str | None = None,
        options: ClassifyOptions | None = None,
        pack: ClassifierPack | None = None,
        **overrides: Any,
    ) -> Prediction:
        """Classify one source against candidate labels.

        Args:
            source: path, bytes, binary file object, or array with ``input_rate``.
            labels: list of labels, or one comma/newline separated string.
            input_rate: sample rate of an array source.
            name: how to name the source in the result and in errors.
            options: :class:`ClassifyOptions`; keyword overrides such as
                ``threshold=0.5``, ``top_k=5``, ``hop_s=2`` apply on top.
            pack: a classifier pack to score with instead of label texts
                (``labels`` then ``None`` or the pack's labels).

        Returns:
            A :class:`Prediction`: scores, top label or "uncertain", timeline.

        Raises:
            AudioError: undecodable or out-of-limits audio.
            LabelError: unusable labels.
            ConfigError: bad options.
        """
        opts = self.resolve_options(options, **overrides)
        labels_t = self._check_labels(labels, pack)  # before spending time on audio
        emb = self.embed(source, input_rate=input_rate, name=name, options=opts)
        return self.score(emb, labels_t, options=opts, pack=pack)

    def classify_many(
        self,
        sources: Iterable[_audio.Source],
        labels: str | Iterable[str] | None = None,
        *,
        options: ClassifyOptions | None = None,
        pack: ClassifierPack | None = None,
        **overrides: Any,
    ) -> Iterator[Prediction | AudioError]:
        """Classify sources one after another; a bad file yields its ``AudioError`` and the rest go on.

        Each source is embedded on its own, so its result never depends on its neighbours.
        With ``pack``, the pack scores its own labels (as in :meth:`classify`).
        """
        opts = self.resolve_options(options, **overrides)
        labels_t = self._check_labels(labels, pack)  # before any audio; warms the text cache
        if labels_t is not None:
            self.text_embeddings(labels_t, opts.templates)
        for source in sources:
            try:
                yield self.score(self.embed(source, options=opts), labels_t, options=opts, pack=pack)
            except AudioError as ex:
                yield ex


def classify(
    source: _audio.Source,
    labels: str | Iterable[str],
    *,
    model: str | None = None,
    input_rate: int | None = None,
    **options: Any,
) -> Prediction:
    """One-shot: load a model, classify one source, return a :class:`Prediction`.

    Keep a :class:`Classifier` instead when classifying more than once.
    """
    return Classifier(model).classify(source, labels, input_rate=input_rate, **options)
