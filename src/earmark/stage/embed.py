"""Sources to window embeddings: decode, cut, compute features, hand to the runner, collect.

One producer path (:func:`submit_chunks`) serves every surface: it cuts a
chunk stream with the one cutter (:mod:`.windows`), computes each group of
windows' features in the producer's own thread (numpy, scipy and PyAV release
the GIL) and hands them to the :class:`~earmark.stage.batches.ModelRunner`, so
decoding and features overlap with the model. What differs between surfaces is
only where the chunks come from:

- :func:`embed_source` (``Classifier.classify``/``embed``): one source,
  decoded in the calling thread while the model works on its earlier windows;
- :func:`embed_many` (``classify_many``, ``earmark classify DIR``, ``tag``,
  ``eval``): worker threads decode the next sources while the model works;
  results come in input order, a bad source yields its error and the rest go
  on; the model call may hold windows of several sources (the fixed call shape
  makes that safe);
- the server decodes uploads in isolated worker processes and submits the
  samples (:func:`submit_chunks` on one chunk); the monitor cuts live streams
  with :class:`~earmark.stage.windows.WindowCutter` and submits as it goes.

Memory stays bounded: a producer has at most ``ahead`` windows queued or on the
model at once, so a two-hour file never sits in memory whole.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import audio as _audio
from ..errors import AudioError
from .batches import ModelRunner
from .windows import iter_windows

if TYPE_CHECKING:
    from ..audio import Source
    from ..classify import Classifier
    from ..types import ClassifyOptions

__all__ = ["AudioEmbedding", "Pending", "embed_many", "embed_source", "submit_chunks"]

_WAIT_S = 0.1


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


class _Stopped(Exception):
    """The consumer went away; the producer stops."""


class _Inflight:
    """At most ``limit`` windows of one producer queued or on the model (at least one batch always fits)."""

    def __init__(self, limit: int, stop: threading.Event | None) -> None:
        self.limit, self.stop = limit, stop
        self._n = 0
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            while self._n and self._n + n > self.limit:
                if self.stop is not None and self.stop.is_set():
                    raise _Stopped
                self._cond.wait(_WAIT_S)
            if self.stop is not None and self.stop.is_set():
                raise _Stopped
            self._n += n

    def release(self, _: object = None) -> None:
        with self._cond:
            self._n -= 1
            self._cond.notify_all()


@dataclass
class Pending:
    """Windows of one source handed to the runner: their spans and one future each.

    Attributes:
        name: the source's name.
        rate: sample rate of the windows.
        spans: (start, end) samples of each window.
        futures: each window's embedding.
        total: samples of audio seen.
    """

    name: str
    rate: int
    spans: list[tuple[int, int]] = field(default_factory=list)
    futures: list[Future[np.ndarray]] = field(default_factory=list)
    total: int = 0

    def cancel(self) -> None:
        """Give up: windows not yet on the model are skipped."""
        for f in self.futures:
            f.cancel()

    def assemble(self, vectors: list[np.ndarray]) -> AudioEmbedding:
        """The embedding from the futures' results (in order)."""
        return AudioEmbedding(
            source=self.name,
            spans_s=tuple((s / self.rate, e / self.rate) for s, e in self.spans),
            vectors=np.stack(vectors).astype(np.float32, copy=False),
            duration_s=self.total / self.rate,
            sample_rate=self.rate,
        )

    def result(self) -> AudioEmbedding:
        """Wait for every window's embedding (the model's exception, if it failed)."""
        try:
            return self.assemble([f.result() for f in self.futures])
        finally:
            self.cancel()


def submit_chunks(
    runner: ModelRunner,
    chunks: Iterable[np.ndarray],
    *,
    name: str,
    window_s: float,
    hop_s: float,
    stop: threading.Event | None = None,
    ahead: int | None = None,
) -> Pending:
    """Cut a chunk stream into windows, compute their features here, hand them to the runner.

    Args:
        runner: the model runner (its backend gives the rate and features).
        chunks: float32 mono at the backend's rate.
        name: the source's name (for errors and the result).
        window_s: window length in seconds.
        hop_s: hop in seconds.
        stop: set by a consumer that went away; the producer stops early.
        ahead: most windows queued or on the model at once (default: a few batches).

    Returns:
        The source's :class:`Pending` windows (its futures complete as the model runs).

    Raises:
        AudioError: the source cannot be decoded, or holds no samples.
    """
    backend = runner.backend
    rate = int(backend.sample_rate)
    window, hop = int(round(window_s * rate)), int(round(hop_s * rate))
    batch = runner.batch
    inflight = _Inflight(ahead or max(2, int(backend.streams) + 1) * batch, stop)
    out = Pending(name=name, rate=rate)
    group: list[np.ndarray] = []

    def counted() -> Iterator[np.ndarray]:
        for chunk in chunks:
            out.total += chunk.size
            yield chunk

    def flush() -> None:
        feats = backend.window_features(group)
        inflight.acquire(len(group))
        futures = runner.submit(feats)
        for f in futures:
            f.add_done_callback(inflight.release)
        out.futures.extend(futures)
        group.clear()

    try:
        with runner.producing():
            for start, samples in iter_windows(counted(), window=window, hop=hop):
                out.spans.append((start, start + samples.size))
                group.append(samples)
                if len(group) == batch:
                    flush()
            if group:
                flush()
    except BaseException:
        out.cancel()
        raise
    if not out.spans:
        raise AudioError(name, "decodes to no audio samples")
    return out


def embed_source(
    classifier: Classifier,
    source: Source,
    *,
    options: ClassifyOptions,
    input_rate: int | None = None,
    name: str | None = None,
) -> AudioEmbedding:
    """Decode one source window by window (in this thread, while the model runs) and embed it.

    Raises:
        AudioError: the source cannot be decoded (see :func:`earmark.audio.stream`).
    """
    name = _audio.source_name(source, name)
    rate = classifier.backend.sample_rate
    chunks = _audio.stream(
        source, sample_rate=rate, input_rate=input_rate, limits=classifier.limits, name=name
    )
    pending = submit_chunks(
        classifier.runner, chunks, name=name, window_s=options.window_s, hop_s=options.hop_s
    )
    return pending.result()


def embed_many(
    classifier: Classifier,
    sources: Iterable[Source],
    *,
    options: ClassifyOptions | None = None,
    workers: int = 2,
    decode: Callable[[Source, str], Iterable[np.ndarray]] | None = None,
) -> Iterator[tuple[Source, AudioEmbedding | AudioError]]:
    """Embed each source's windows; yields results in input order.

    Args:
        classifier: supplies the runner, options and audio limits.
        sources: paths, bytes or file objects (read lazily, a few ahead).
        options: window/hop settings (default: the classifier's).
        workers: threads decoding and extracting features ahead of the model.
        decode: ``(source, name) -> chunks`` instead of :func:`earmark.audio.stream`
            (pre-processing such as noise reduction goes here).

    Yields:
        ``(source, embedding)``, or ``(source, AudioError)`` for a source that cannot be decoded.
    """
    opts = options or classifier.options
    rate = classifier.backend.sample_rate

    def chunks(source: Source, name: str) -> Iterable[np.ndarray]:
        if decode is not None:
            return decode(source, name)
        return _audio.stream(source, sample_rate=rate, limits=classifier.limits, name=name)

    def produce(source: Source) -> Pending:
        name = _audio.source_name(source)
        return submit_chunks(
            classifier.runner,
            chunks(source, name),
            name=name,
            window_s=opts.window_s,
            hop_s=opts.hop_s,
            stop=stop,
        )

    stop = threading.Event()
    ahead = max(1, workers) * 2
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="earmark-decode")
    todo: deque[tuple[Source, Future[Pending]]] = deque()
    it = iter(sources)
    try:
        while True:
            while len(todo) < ahead:
                try:
                    source = next(it)
                except StopIteration:
                    break
                todo.append((source, pool.submit(produce, source)))
            if not todo:
                return
            source, fut = todo.popleft()
            try:
                yield source, fut.result().result()
            except AudioError as ex:
                yield source, ex
    finally:
        stop.set()
        for _, fut in todo:
            fut.cancel()
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                fut.result().cancel()
        pool.shutdown(wait=False, cancel_futures=True)
