"""Embedding many sources: the loop that tagging, evaluation and batch classify share.

``embed_many`` yields ``(source, AudioEmbedding | AudioError)`` in input order,
so callers never depend on scheduling. A bad source yields its error and the
rest go on.

Overlap: worker threads decode, resample, window and compute features (PyAV,
numpy and scipy release the GIL) for the next few sources while the calling
thread runs the model, so a folder of files keeps the model busy. The model
call may hold windows of several consecutive sources (batch invariance makes
that safe: a window's embedding does not depend on its batch). Memory stays
bounded: each source hands over at most ``QUEUE_PIECES`` batches of windows
ahead of the model, so a two-hour file never sits in memory whole.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import audio as _audio
from .errors import AudioError

if TYPE_CHECKING:
    from .audio import Source
    from .classify import AudioEmbedding, Classifier
    from .types import ClassifyOptions

__all__ = ["embed_many"]

log = logging.getLogger("earmark")

QUEUE_PIECES = 2  # batches of windows a source may prepare ahead of the model
_PUT_WAIT_S = 0.1


def embed_many(
    classifier: Classifier,
    sources: Iterable[Source],
    *,
    options: ClassifyOptions | None = None,
    workers: int = 2,
) -> Iterator[tuple[Source, AudioEmbedding | AudioError]]:
    """Embed each source's windows; yields results in input order.

    Args:
        classifier: supplies the backend, options and audio limits.
        sources: paths, bytes or file objects (read lazily, a few ahead).
        options: window/hop settings (default: the classifier's).
        workers: threads decoding and extracting features ahead of the model.

    Yields:
        ``(source, embedding)``, or ``(source, AudioError)`` for a source that cannot be decoded.
    """
    opts = options or classifier.options
    ahead = max(1, workers) * 2
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="earmark-decode")
    streams: deque[_Stream] = deque()
    it = iter(sources)
    exhausted = False
    try:
        while True:
            while not exhausted and len(streams) < ahead:
                try:
                    source = next(it)
                except StopIteration:
                    exhausted = True
                    break
                st = _Stream(source=source)
                pool.submit(_produce, classifier, source, opts, st.queue, stop)
                streams.append(st)
            if not streams:
                return
            _run_model(classifier, streams)
            while streams and streams[0].done:
                st = streams.popleft()
                yield st.source, st.result(classifier)
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Stream:
    """One source on its way through: what its producer sent, and its embeddings so far."""

    source: Any
    queue: queue.Queue[tuple[Any, ...]] = field(default_factory=lambda: queue.Queue(maxsize=QUEUE_PIECES))
    spans: list[tuple[float, float]] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    name: str = ""
    total: int = 0
    error: BaseException | None = None
    done: bool = False

    def take(self, block: bool) -> tuple[Any, ...] | None:
        """The next piece, or None when not ready (non-blocking); end and errors finish the stream."""
        try:
            item = self.queue.get(block=block)
        except queue.Empty:
            return None
        if item[0] == "windows":
            return item
        if item[0] == "end":
            self.name, self.total = item[1], item[2]
        else:
            self.error = item[1]
        self.done = True
        return None

    def result(self, classifier: Classifier) -> AudioEmbedding | AudioError:
        from .classify import AudioEmbedding

        if isinstance(self.error, AudioError):
            return self.error
        if self.error is not None:
            raise self.error  # a bug or an escalated warning: as the sequential loop would
        rate = classifier.backend.sample_rate
        return AudioEmbedding(
            source=self.name,
            spans_s=tuple(self.spans),
            vectors=np.concatenate(self.vectors),
            duration_s=self.total / rate,
            sample_rate=rate,
        )


def _run_model(classifier: Classifier, streams: deque[_Stream]) -> None:
    """One model call on the next pieces in order: waits for the first, adds what is ready."""
    backend: Any = classifier.backend  # window_features/embed_features are optional extras
    limit = int(getattr(backend, "batch_size", 8))
    taken: list[tuple[_Stream, list[tuple[float, float]], Any]] = []
    count = 0
    for st in streams:
        while count < limit and not st.done:
            item = st.take(block=not taken and st is streams[0])
            if item is None:
                break
            taken.append((st, item[1], item[2]))
            count += len(item[1])
        if not st.done or count >= limit:
            break  # never skip past a source that is still coming: keeps memory and order simple
    if not taken:
        return
    pieces = [p for _, _, p in taken]
    if _has_feature_split(backend):
        vectors = backend.embed_features(np.concatenate(pieces))
    else:
        vectors = backend.embed_audio([w for p in pieces for w in p])
    at = 0
    for st, spans, _ in taken:
        st.spans.extend(spans)
        st.vectors.append(vectors[at : at + len(spans)])
        at += len(spans)


def _has_feature_split(backend: Any) -> bool:
    return hasattr(backend, "window_features") and hasattr(backend, "embed_features")


def _produce(
    classifier: Classifier,
    source: Source,
    opts: ClassifyOptions,
    out: queue.Queue[tuple[Any, ...]],
    stop: threading.Event,
) -> None:
    """Decode ``source`` into batches of windows (as features when the backend allows) on ``out``."""

    def put(item: tuple[Any, ...]) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=_PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    try:
        name, total = _decode_windows(classifier, source, opts, put)
        put(("end", name, total))
    except AudioError as ex:
        put(("error", ex))
    except BaseException as ex:  # noqa: BLE001 - handed to the consumer, which re-raises it
        put(("crash", ex))


def _decode_windows(
    classifier: Classifier, source: Source, opts: ClassifyOptions, put: Any
) -> tuple[str, int]:
    backend: Any = classifier.backend
    rate = backend.sample_rate
    window = int(round(opts.window_s * rate))
    hop = int(round(opts.hop_s * rate))
    limit = int(getattr(backend, "batch_size", 8))
    features = _has_feature_split(backend)
    name = _audio.source_name(source)
    total = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal total
        for chunk in _audio.stream(source, sample_rate=rate, limits=classifier.limits, name=name):
            total += chunk.size
            yield chunk

    spans: list[tuple[float, float]] = []
    wins: list[np.ndarray] = []
    seen = 0

    def flush() -> bool:
        payload = backend.window_features(wins) if features else list(wins)
        ok = bool(put(("windows", list(spans), payload)))
        spans.clear()
        wins.clear()
        return ok

    for start, samples in _audio.iter_windows(counted(), window=window, hop=hop):
        spans.append((start / rate, (start + samples.size) / rate))
        wins.append(samples)
        seen += 1
        if len(wins) == limit and not flush():
            return name, total  # the consumer went away
    if wins:
        flush()
    if not seen:
        raise AudioError(name, "decodes to no audio samples")
    return name, total
