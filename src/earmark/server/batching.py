"""Micro-batching and admission: concurrent requests share model batches behind a bounded queue.

One thread owns the model (:class:`ModelBatcher`). Requests hand it audio
windows; it waits up to ``max_wait_ms`` for more windows (only while other
requests are still on their way) and embeds up to ``batch_size`` at once.

Every model call has exactly ``batch_size`` windows, padded with silence when
fewer are waiting. Why: CPU and GPU kernels are chosen by batch shape, so the
same window comes out a few 1e-8 different in a batch of 1, 3 or 8 (measured
with the tiny model: sizes 1 | 2-3 | 4-8 differ), enough to change the 6th
decimal of a score. At one fixed shape a window's embedding is bit-identical
whatever it is batched with and wherever it sits, so a request's result never
depends on other traffic. Padding is cheap on a GPU; on a CPU the default
batch size is 1 (see :mod:`.settings`).

:class:`Admission` bounds how many requests the server holds: past
``capacity`` a request is refused at once with :class:`ServerBusy`, never
left waiting.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..backends import Backend
from .errors import ServerBusy

__all__ = ["Admission", "ModelBatcher"]

log = logging.getLogger("earmark")

T = TypeVar("T")


@dataclass
class _Window:
    samples: np.ndarray
    future: Future[np.ndarray]


@dataclass
class _Call:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any]


_STOP = object()


class ModelBatcher:
    """The model's own thread: embeds windows from many requests in shared batches.

    Args:
        backend: the model (``embed_audio`` is only ever called from this thread).
        batch_size: windows per model call, always (padded with silence).
        max_wait_ms: longest a batch waits for more windows.
        expecting_more: tells whether other requests are on their way (decoding);
            a batch only waits when they are, so a lone request never waits.
        on_batch: called with (batch size, seconds) after each batch, for metrics.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        batch_size: int = 1,
        max_wait_ms: float = 5.0,
        expecting_more: Callable[[], bool] = lambda: False,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.backend = backend
        self.batch_size = batch_size
        self._padding: np.ndarray | None = None
        self.max_wait_s = max_wait_ms / 1000
        self._expecting_more = expecting_more
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="earmark-model", daemon=True)
        self._thread.start()

    def embed(self, windows: Sequence[np.ndarray]) -> list[Future[np.ndarray]]:
        """Queue windows for embedding; each future gives one (dim,) vector."""
        futures: list[Future[np.ndarray]] = []
        for w in windows:
            fut: Future[np.ndarray] = Future()
            self._queue.put(_Window(w, fut))
            futures.append(fut)
        return futures

    def call(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on the model thread (text embeddings, scoring), in queue order."""
        fut: Future[T] = Future()
        self._queue.put(_Call(fn, args, fut))
        return fut

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        pending: Any = None
        while True:
            item = pending if pending is not None else self._queue.get()
            pending = None
            if item is _STOP:
                return
            if isinstance(item, _Call):
                _run_call(item)
                continue
            batch, pending = self._gather(item)
            self._embed(batch)

    def _gather(self, first: _Window) -> tuple[list[_Window], Any]:
        """Collect a batch: what is queued now, plus what arrives within the wait if more is coming."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._expecting_more():
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if not isinstance(item, _Window):
                return batch, item  # a call or stop: handled after this batch, in order
            batch.append(item)
        return batch, None

    def _embed(self, batch: list[_Window]) -> None:
        live = [w for w in batch if w.future.set_running_or_notify_cancel()]
        if not live:
            return
        start = time.perf_counter()
        try:
            vectors = self._embed_fixed_shape([w.samples for w in live])
        except BaseException as ex:  # noqa: BLE001 - hand any failure to every waiting request
            for w in live:
                w.future.set_exception(ex)
            return
        for w, v in zip(live, vectors, strict=True):
            w.future.set_result(v)
        if self._on_batch:
            self._on_batch(len(live), time.perf_counter() - start)

    def _embed_fixed_shape(self, windows: list[np.ndarray]) -> np.ndarray:
        """Embed ``windows`` in one call of exactly ``batch_size`` rows (padding rows are dropped)."""
        missing = self.batch_size - len(windows)
        if missing <= 0:
            return self.backend.embed_audio(windows)
        features = getattr(self.backend, "features", None)
        embed_features = getattr(self.backend, "embed_features", None)
        if features is not None and embed_features is not None:
            # pad at the feature level: silence's features are computed once, not per batch
            if self._padding is None:
                self._padding = features(np.zeros(self.backend.window_samples, np.float32))
            rows = [features(w) for w in windows] + [self._padding] * missing
            return np.asarray(embed_features(np.stack(rows)))[: len(windows)]
        silence = np.zeros(self.backend.window_samples, np.float32)
        return self.backend.embed_audio([*windows, *([silence] * missing)])[: len(windows)]


def _run_call(call: _Call) -> None:
    if not call.future.set_running_or_notify_cancel():
        return
    try:
        call.future.set_result(call.fn(*call.args))
    except BaseException as ex:  # noqa: BLE001 - the caller gets it
        call.future.set_exception(ex)


class Admission:
    """Counts requests in the server and refuses those beyond ``capacity`` at once.

    Args:
        capacity: requests held at once (being worked on plus waiting).
        parallelism: requests worked on at once, for the Retry-After estimate.
    """

    def __init__(self, capacity: int, parallelism: int = 1) -> None:
        self.capacity = capacity
        self.parallelism = max(1, parallelism)
        self._lock = threading.Lock()
        self._held = 0
        self._mean_s = 1.0  # running mean of request time, for Retry-After

    @property
    def held(self) -> int:
        return self._held

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place for the duration of a request.

        Raises:
            ServerBusy: the server already holds ``capacity`` requests.
        """
        with self._lock:
            if self._held >= self.capacity:
                raise ServerBusy(self.retry_after_s())
            self._held += 1
        start = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - start
            with self._lock:
                self._held -= 1
                self._mean_s = 0.9 * self._mean_s + 0.1 * elapsed

    def retry_after_s(self) -> int:
        """Whole seconds until a place is likely free (at least 1)."""
        return max(1, min(60, math.ceil(self._mean_s * self._held / self.parallelism)))
