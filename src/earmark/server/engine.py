"""The serving engine: admission, isolated decoding, micro-batched embedding, scoring.

Every request of the API and of the page goes the same way::

    admit (or 429) ─► decode in a worker process ─► the stage: windows, features,
    the classifier's ModelRunner (fixed-shape batches shared by all requests) ─► score

It works from any event loop (threads and ``concurrent.futures`` inside), so
FastAPI routes and Gradio handlers share one engine and one model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..classify import AudioEmbedding, Classifier
from ..errors import AudioError, LabelError
from ..labels import check_pack_labels, parse_labels
from ..stage import BatchPolicy, Pending, submit_chunks
from ..types import ClassifyOptions, Prediction
from .batching import Admission
from .decoding import Data, DecoderPool
from .errors import RequestDeadline
from .guards import check_window_count
from .settings import ServerSettings

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack

__all__ = ["ServingEngine"]

log = logging.getLogger("earmark")

T = TypeVar("T")


class ServingEngine:
    """One model behind a bounded queue, shared by every request.

    Args:
        classifier: the loaded model, templates cache and default options.
        settings: limits, queue and batching settings.
        observe: optional metrics hooks: ``observe("batch", size, seconds)``,
            ``observe("decode", seconds)``.
    """

    def __init__(
        self,
        classifier: Classifier,
        settings: ServerSettings,
        *,
        observe: Callable[..., None] | None = None,
    ) -> None:
        self.classifier = classifier
        self.settings = settings
        self._observe = observe or (lambda *a: None)
        self.admission = Admission(settings.capacity, parallelism=settings.decode_workers)
        self.limits = dataclasses.replace(
            classifier.limits, max_duration_s=settings.max_duration_s, max_bytes=settings.max_upload_bytes
        )
        self.decoder = DecoderPool(
            workers=settings.decode_workers, timeout_s=settings.decode_timeout_s, limits=self.limits
        )
        self._decode_threads = ThreadPoolExecutor(
            settings.decode_workers, thread_name_prefix="earmark-decode"
        )
        # the one batch policy of the stage; the wait applies only while requests are decoding
        classifier.set_batch_policy(
            BatchPolicy(max_batch=settings.max_batch_size or None, max_wait_s=settings.max_wait_ms / 1000)
        )
        self.runner = classifier.runner
        self._unobserve = self.runner.observe(lambda n, s: self._observe("batch", n, s))

    @property
    def sample_rate(self) -> int:
        return self.classifier.sample_rate

    def options(self, **overrides: Any) -> ClassifyOptions:
        """The classifier's options with ``overrides`` (``None`` values ignored), validated."""
        return self.classifier.resolve_options(None, **overrides)

    async def classify(
        self,
        data: Data,
        labels: str | Iterable[str] | None,
        options: ClassifyOptions,
        *,
        name: str,
        pack: ClassifierPack | None = None,
    ) -> Prediction:
        """Decode an upload in a worker, embed it in shared batches, score it.

        Args:
            data: the upload (bytes, or a path to its private temporary file).
            labels: candidate labels; with ``pack``, ``None`` or exactly the pack's labels.
            options: from :meth:`options`.
            name: how the upload is named in the result and in errors.
            pack: a classifier pack (already loaded by the server) scores instead of label texts.

        Raises:
            ServerBusy: the queue is full (429).
            LabelError, ConfigError: unusable labels or options (checked before any work).
            AudioError, DecodeTimeout: the upload cannot be decoded in time.
            RequestDeadline: the whole request ran past ``request_timeout_s``.
        """
        labels_t = _check_labels(labels, pack)
        with self.admission.slot():
            embedding = self._embed_upload(data, options, name)
            return await self._deadline(self._score(embedding, labels_t, options, pack))

    async def classify_samples(
        self,
        samples: np.ndarray,
        labels: str | Iterable[str] | None,
        options: ClassifyOptions,
        *,
        name: str,
        pack: ClassifierPack | None = None,
    ) -> Prediction:
        """Classify float32 mono samples already at the model's rate (the live microphone)."""
        labels_t = _check_labels(labels, pack)
        with self.admission.slot():
            embedding = self._embed_samples(samples, options, name)
            return await self._deadline(self._score(embedding, labels_t, options, pack))

    async def embed_upload(self, data: Data, options: ClassifyOptions, *, name: str) -> AudioEmbedding:
        """Window embeddings of an upload (L2-normalised), decoded in a worker."""
        with self.admission.slot():
            return await self._deadline(self._embed_upload(data, options, name))

    async def embed_texts(self, texts: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """(n, dim) text embeddings: raw texts, or labels through prompt ``templates`` (cached)."""
        with self.admission.slot():
            if templates:
                fn = partial(self.classifier.text_embeddings, texts, templates)
            else:
                fn = partial(self.classifier.backend.embed_text, list(texts))
            return await self._deadline(self._on_model(fn))

    async def warm_up(self, timeout_s: float) -> None:
        """Every decode worker started, one decode and one model pass: the first requests are not the slow ones.

        Not a client request: it takes no admission slot and runs under its own
        ``timeout_s``, not ``decode_timeout_s``/``request_timeout_s`` (deadlines
        meant for hostile uploads, which may be set small).
        """
        from ..synth import make

        async def decode_pass() -> None:
            await asyncio.get_running_loop().run_in_executor(self._decode_threads, self.decoder.start)
            wave = (make("beep", 1.0) * 32767).astype("<i2")
            await self._decode(_wav_bytes(wave, 48_000), "warm-up", timeout_s=timeout_s)

        async def model_pass() -> None:
            opts = self.options()
            embedding = self._embed_samples(np.zeros(self.sample_rate, np.float32), opts, "warm-up")
            await self._score(embedding, ("a", "b"), opts, None)

        async def warm() -> None:
            # the model's first pass runs while the decode workers (other processes) start
            await asyncio.gather(decode_pass(), model_pass())

        try:
            await asyncio.wait_for(warm(), timeout_s)
        except asyncio.TimeoutError:
            raise RequestDeadline(f"warm-up took longer than {timeout_s:g} s") from None

    def close(self) -> None:
        """Stop the model thread and the decode workers."""
        self._unobserve()  # the runner belongs to the classifier and outlives this engine
        self._decode_threads.shutdown(wait=True)
        self.decoder.close()

    async def _deadline(self, coro: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(coro, self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestDeadline(
                f"the request took longer than {self.settings.request_timeout_s:g} s; try a shorter file"
            ) from None

    async def _embed_upload(self, data: Data, options: ClassifyOptions, name: str) -> AudioEmbedding:
        with self.runner.producing():  # short batches wait for this request's windows
            samples = await self._decode(data, name)
            pending = await self._submit(samples, options, name)
        return await self._collect(pending)

    async def _decode(self, data: Data, name: str, timeout_s: float | None = None) -> np.ndarray:
        start = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._decode_threads,
                lambda: self.decoder.decode(
                    data, sample_rate=self.sample_rate, name=name, timeout_s=timeout_s
                ),
            )
        finally:
            self._observe("decode", time.perf_counter() - start)

    async def _embed_samples(
        self, samples: np.ndarray, options: ClassifyOptions, name: str
    ) -> AudioEmbedding:
        return await self._collect(await self._submit(samples, options, name))

    async def _submit(self, samples: np.ndarray, options: ClassifyOptions, name: str) -> Pending:
        """Windows and features (in a decode thread), handed to the runner: the stage's one path."""
        if samples.size == 0:
            raise AudioError(name, "decodes to no audio samples")
        check_window_count(samples.size / self.sample_rate, options, self.settings.max_windows)
        gave_up = threading.Event()  # a request past its deadline stops handing windows to the model
        submitted = self._decode_threads.submit(
            partial(
                submit_chunks,
                self.runner,
                [samples],
                name=name,
                window_s=options.window_s,
                hop_s=options.hop_s,
                stop=gave_up,
            )
        )
        try:
            return await asyncio.wrap_future(submitted)
        except asyncio.CancelledError:
            gave_up.set()
            submitted.add_done_callback(_cancel_pending)  # windows already handed over are skipped
            raise

    async def _collect(self, pending: Pending) -> AudioEmbedding:
        try:
            vectors = [await asyncio.wrap_future(f) for f in pending.futures]
        finally:
            pending.cancel()  # a request that gave up frees its place in the batches
        return pending.assemble(vectors)

    async def _score(
        self,
        embedding: Awaitable[AudioEmbedding],
        labels: tuple[str, ...] | None,
        options: ClassifyOptions,
        pack: ClassifierPack | None,
    ) -> Prediction:
        emb = await embedding
        # on the model thread: a pack's model check may embed its label texts
        return await self._on_model(partial(self.classifier.score, emb, labels, options=options, pack=pack))

    async def _on_model(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.runner.call(fn))


def _cancel_pending(submitted: Future[Pending]) -> None:
    if not submitted.cancelled() and submitted.exception() is None:
        submitted.result().cancel()


def _check_labels(labels: str | Iterable[str] | None, pack: ClassifierPack | None) -> tuple[str, ...] | None:
    """Parsed labels, checked before any work; ``None`` when a pack scores its own labels."""
    if labels is None:
        if pack is None:
            raise LabelError("no labels given: send the candidate labels, or name a classifier pack")
        return None
    labels_t = parse_labels(labels)
    if pack is not None:
        check_pack_labels(labels_t, pack.labels)
    return labels_t


def _wav_bytes(pcm16: np.ndarray, rate: int) -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16.tobytes())
    return buf.getvalue()
