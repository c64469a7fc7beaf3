"""The classifier: audio + free-text labels -> confidence per label.

``Classifier`` is long-lived (loads the model once, caches label embeddings);
``classify()`` is the one-shot wrapper. Audio goes to the model through the
one stage (:mod:`earmark.stage`): cut into windows as it decodes (so a
two-hour file never sits in memory whole), features overlapped with the
model, fixed-shape batches.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import audio as _audio
from . import label_cache
from .backends import Backend, get_backend
from .errors import AudioError, ConfigError, LabelError
from .labels import check_pack_labels, check_templates, parse_labels
from .scoring import build_prediction
from .stage import AudioEmbedding, BatchPolicy, ModelRunner, embed_many, embed_source
from .types import MIN_HOP_S, ClassifyOptions, Prediction

if TYPE_CHECKING:
    from .adapt.packs import ClassifierPack

__all__ = ["AudioEmbedding", "Classifier", "classify"]

log = logging.getLogger("earmark")


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
        throughput: many clips or long audio will be in flight at once (as ``earmark tag``,
            ``serve`` and ``eval`` run): a backend that can (OpenVINO) splits its threads into
            two inference streams, more windows per second but a slower lone clip. Default:
            every thread on one call, the fastest single clip.
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
        throughput: bool = False,
    ) -> None:
        if backend is None or isinstance(backend, str):
            backend = get_backend(backend, model=model, device=device, threads=threads, throughput=throughput)
        self.backend = backend
        self.options = options or ClassifyOptions()
        self.limits = limits
        self._text_cache: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._text_cache_size = text_cache_size
        # label embeddings on disk: a restart with known labels never loads the text tower
        self._labels = label_cache.for_backend(backend) if persist_labels else None
        self._lock = threading.Lock()
        self._runner: ModelRunner | None = None

    @property
    def runner(self) -> ModelRunner:
        """The model's threads (:class:`~earmark.stage.ModelRunner`), started on first use."""
        with self._lock:
            if self._runner is None:
                self._runner = ModelRunner(self.backend)
            return self._runner

    def set_batch_policy(self, policy: BatchPolicy) -> None:
        """How windows wait and group for the model (the server and the monitor set their own)."""
        self.runner.policy = policy

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
        if not MIN_HOP_S <= opts.hop_s <= opts.window_s:
            raise ConfigError(f"hop_s must be between {MIN_HOP_S:g} s and window_s ({opts.window_s:g} s)")
        if not 0.0 <= opts.threshold <= 1.0:
            raise ConfigError("threshold must be between 0 and 1")
        if opts.top_k < 1:
            raise ConfigError("top_k must be at least 1")
        if opts.aggregate not in ("mean", "max"):
            raise ConfigError("aggregate must be 'mean' or 'max'")
        return opts

    def text_embeddings(self, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """(labels, dim) label embeddings, averaged over templates; cached per (model, template, label)."""
        check_templates(templates)  # {label} only: a format spec could make one prompt gigabytes long
        model = self.model_id
        with self._lock:
            missing = [
                (t, label) for t in templates for label in labels if (model, t, label) not in self._text_cache
            ]
        if missing:
            missing = list(dict.fromkeys(missing))
            stored = self._labels.get(missing) if self._labels is not None else {}
            todo = [key for key in missing if key not in stored]  # only these need the text tower
            # one prompt per call: a label's vector never depends on which labels came with it (a batch's
            # shape moves the last bits of a GEMM, ~6e-8: the 6th decimal of a printed probability)
            vectors: list[np.ndarray] = [
                np.asarray(self.backend.embed_text([t.format(label=label)]))[0] for t, label in todo
            ]
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
        return embed_source(self, source, options=options or self.options, input_rate=input_rate, name=name)

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
        check_pack_labels(labels, pack.labels)
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
        """Classify sources in input order; a bad file yields its ``AudioError`` and the rest go on.

        Worker threads decode the next sources while the model runs (:func:`earmark.stage.embed_many`);
        a window's result never depends on its neighbours (fixed-shape batches), so each
        prediction equals :meth:`classify` of that source alone.
        With ``pack``, the pack scores its own labels (as in :meth:`classify`).
        """
        opts = self.resolve_options(options, **overrides)
        labels_t = self._check_labels(labels, pack)  # before any audio; warms the text cache
        if labels_t is not None:
            self.text_embeddings(labels_t, opts.templates)
        for _source, emb in embed_many(self, sources, options=opts):
            if isinstance(emb, AudioError):
                yield emb
            else:
                yield self.score(emb, labels_t, options=opts, pack=pack)


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
