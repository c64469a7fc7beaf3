"""The one batch policy: windows from anywhere meet in fixed-shape model calls.

:class:`ModelRunner` owns the model's threads (``backend.streams`` of them).
Producers (decoding threads, server requests, monitored streams) hand it
features of windows and get one future per window; the runner embeds them in
model calls of exactly ``batch`` rows, padding a short call with silence.

Why a fixed shape: CPU and GPU kernels are chosen by batch shape, so the same
window comes out a few 1e-8 different in a batch of 1, 3 or 8 (enough to move
the 6th decimal of a score). At one shape a window's embedding is bit-identical
whatever it is batched with and wherever it sits, so ``classify``, ``tag``,
``eval``, ``serve`` and ``monitor`` give the same numbers, and a server
request's result never depends on other traffic. The shape is the backend's
``batch_size`` (1 on a CPU, where padding would cost; 8 on a GPU, where it is
cheap); :class:`BatchPolicy` may only lower it.

Waiting: a short call waits up to ``max_wait_s`` for more windows, and only
while some producer is still at work (:meth:`ModelRunner.producing`), so a
lone request never waits. Offline callers leave ``max_wait_s`` small; live use
(serve, monitor) sets it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..backends import Backend

__all__ = ["BatchPolicy", "ModelRunner"]

log = logging.getLogger("earmark")

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    """How windows are grouped into model calls.

    Attributes:
        max_batch: most windows per model call; ``None``: the backend's ``batch_size``.
            Never above it; a lower value changes the call shape (and, on a GPU, the last
            bits of embeddings compared with other surfaces).
        max_wait_s: longest a short call waits for more windows while producers are at work.
    """

    max_batch: int | None = None
    max_wait_s: float = 0.005

    def __post_init__(self) -> None:
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError("max_batch must be at least 1 (or None for the backend's batch size)")
        if self.max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")

    def batch_for(self, backend: Backend) -> int:
        """Rows of every model call on ``backend``."""
        size = max(1, int(backend.batch_size))
        return size if self.max_batch is None else min(size, self.max_batch)


@dataclass
class _Window:
    features: np.ndarray
    future: Future[np.ndarray]


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future[Any]


class ModelRunner:
    """The model's threads: embed windows' features in fixed-shape calls; run other model work in turn.

    Args:
        backend: the model (``embed_features`` is only called from the runner's threads).
        policy: batch size cap and wait.
    """

    def __init__(self, backend: Backend, policy: BatchPolicy | None = None) -> None:
        self.backend = backend
        self.policy = policy or BatchPolicy()
        self._items: deque[_Window | _Call] = deque()
        self._cond = threading.Condition()
        self._gather = threading.Lock()  # one thread forms a batch at a time
        self._producers = 0
        self._closed = False
        self._padding: np.ndarray | None = None
        self._observers: list[Callable[[int, float], None]] = []
        self._threads = [
            threading.Thread(target=self._run, name=f"earmark-model-{i}", daemon=True)
            for i in range(max(1, int(backend.streams)))
        ]
        for t in self._threads:
            t.start()

    @property
    def batch(self) -> int:
        """Rows of every model call."""
        return self.policy.batch_for(self.backend)

    def observe(self, fn: Callable[[int, float], None]) -> Callable[[], None]:
        """Call ``fn(windows, seconds)`` after every batch (metrics); returns what stops it."""
        self._observers.append(fn)

        def stop() -> None:
            if fn in self._observers:
                self._observers.remove(fn)

        return stop

    def submit(self, features: np.ndarray) -> list[Future[np.ndarray]]:
        """Queue the features of some windows (``window_features`` rows); one future per window.

        Each future gives the window's (dim,) embedding, or the model's exception.
        A cancelled future's window is skipped if it has not run yet.
        """
        futures: list[Future[np.ndarray]] = []
        with self._cond:
            if self._closed:
                raise RuntimeError("the model runner is closed")
            for row in features:
                fut: Future[np.ndarray] = Future()
                self._items.append(_Window(row, fut))
                futures.append(fut)
            self._cond.notify_all()
        return futures

    def embed_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, dim)`` embeddings of windows cut elsewhere (e.g. refinement's short windows), waiting for them.

        Features are computed in this thread; the model runs in this runner's fixed-shape
        calls, so a window gets the vector it gets on every other surface, and the model is
        never called beside the runner. On a model thread (inside :meth:`call`) it embeds
        there instead of queueing behind itself.
        """
        if not windows:
            return np.zeros((0, 0), np.float32)
        features = np.asarray(self.backend.window_features(windows))
        if threading.current_thread() in self._threads:
            return self._embed_fixed(list(features))
        return np.stack([f.result() for f in self.submit(features)])

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn()`` on a model thread in queue order (text embeddings, scoring with a pack)."""
        fut: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the model runner is closed")
            self._items.append(_Call(fn, fut))
            self._cond.notify_all()
        return fut

    @contextmanager
    def producing(self) -> Iterator[None]:
        """Mark a producer at work: short calls may wait ``max_wait_s`` for its windows."""
        with self._cond:
            self._producers += 1
        try:
            yield
        finally:
            with self._cond:
                self._producers -= 1
                self._cond.notify_all()

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    # -- model threads ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._gather:
                work = self._next()
            if work is None:
                return
            if isinstance(work, _Call):
                _run_call(work)
            else:
                self._embed(work)

    def _next(self) -> _Call | list[_Window] | None:
        """The next call, or the next batch: what is queued, plus what comes within the wait."""
        size = self.batch
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                self._cond.wait()
            if isinstance(self._items[0], _Call):
                return self._items.popleft()  # type: ignore[return-value]
            batch: list[_Window] = []
            deadline = time.monotonic() + self.policy.max_wait_s
            while len(batch) < size:
                if self._items and isinstance(self._items[0], _Window):
                    item = self._items.popleft()
                    assert isinstance(item, _Window)
                    if item.future.set_running_or_notify_cancel():
                        batch.append(item)
                    continue
                if self._items or self._closed or not self._producers:
                    break  # a call comes next (after this batch), or nothing more is coming
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return batch

    def _embed(self, batch: list[_Window]) -> None:
        if not batch:
            return
        start = time.perf_counter()
        try:
            vectors = self._embed_fixed([w.features for w in batch])
        except BaseException as ex:  # noqa: BLE001 - every waiting window gets the failure
            for w in batch:
                w.future.set_exception(ex)
            return
        for w, v in zip(batch, vectors, strict=True):
            w.future.set_result(v)
        seconds = time.perf_counter() - start
        for fn in list(self._observers):
            try:
                fn(len(batch), seconds)
            except Exception:  # an observer must not stop the model
                log.exception("model runner observer failed")

    def _embed_fixed(self, rows: list[np.ndarray]) -> np.ndarray:
        """Embed ``rows`` in calls of exactly ``batch`` rows (padding rows are dropped)."""
        size = self.batch
        out = []
        for i in range(0, len(rows), size):
            part = rows[i : i + size]
            missing = size - len(part)
            if missing:
                part = part + [self._pad()] * missing
            out.append(np.asarray(self.backend.embed_features(np.stack(part)))[: size - missing])
        return np.concatenate(out)

    def _pad(self) -> np.ndarray:
        if self._padding is None:
            silence = np.zeros(self.backend.window_samples, np.float32)
            self._padding = np.asarray(self.backend.window_features([silence]))[0]
        return self._padding


def _run_call(call: _Call) -> None:
    if not call.future.set_running_or_notify_cancel():
        return
    try:
        call.future.set_result(call.fn())
    except BaseException as ex:  # noqa: BLE001 - the caller gets it
        call.future.set_exception(ex)
