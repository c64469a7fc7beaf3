"""Decode untrusted audio in worker processes with a wall-clock deadline.

FFmpeg parses hostile bytes for a living; a file that makes it hang or crash
must cost one worker process, never the server. :class:`DecoderPool` keeps a
few decoder processes and hands each call to an idle one:

- A call that runs past its deadline kills that worker, raises
  :class:`~earmark.errors.DecodeTimeout`, and a fresh worker takes its place.
- A worker that dies mid-call (segfault, OOM killer) raises
  :class:`~earmark.errors.AudioError` ("the decoder crashed...") and is replaced.
- Workers are fresh interpreters started with ``subprocess`` (like the
  ``spawn`` start method, never a plain ``fork``), so a parent that already runs
  torch/OpenMP threads is safe, and nothing depends on ``__main__`` being
  importable. A worker is reused for many calls, so start-up (~0.2 s) is paid
  rarely.
- Workers answer in JSON plus raw float32 bytes, never pickle, so even a
  worker that a hostile file took over cannot run code in the caller. The
  samples go straight from the pipe into the result array (no extra copies).
- Workers exit when their parent does (pipe closed, or a watchdog notices).

The pool is thread-safe: the server calls :meth:`DecoderPool.decode` from many
threads, and calls beyond ``workers`` wait for a free worker. POSIX only.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .. import audio
from ..errors import AudioError, DecoderUnavailable, DecodeTimeout
from . import DEFAULT_LIMITS, AudioLimits, AudioWarning
from .sources import is_url, size_text

__all__ = ["DecoderPool", "decode_isolated"]

log = logging.getLogger("earmark")

IsolatedSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
_HEADER_MAX = 1 << 20  # a worker's JSON header is small; refuse anything bigger
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # so workers import this same earmark


class DecoderPool:
    """Worker processes that decode untrusted audio with a wall-clock timeout.

    Args:
        workers: decoder processes (at most this many decodes run at once).
        timeout_s: default wall-clock deadline of one decode, from when a worker takes it.
        limits: default :class:`~earmark.audio.AudioLimits` applied in the worker.
        max_tasks_per_worker: calls after which a worker is replaced (bounds slow leaks).
        start_timeout_s: how long a new worker may take to start.
        memory_limit_bytes: address-space cap of each worker (``RLIMIT_AS``), so a
            decompression bomb fails in its worker; ``None`` for no cap.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        timeout_s: float = 30.0,
        limits: AudioLimits = DEFAULT_LIMITS,
        max_tasks_per_worker: int = 200,
        start_timeout_s: float = 30.0,
        memory_limit_bytes: int | None = 4 * 1024**3,
    ) -> None:
        if workers < 1 or timeout_s <= 0 or max_tasks_per_worker < 1:
            raise ValueError("workers, timeout_s and max_tasks_per_worker must be positive")
        self.workers, self.timeout_s, self.limits = workers, timeout_s, limits
        self.max_tasks_per_worker, self.start_timeout_s = max_tasks_per_worker, start_timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self._slots: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(workers):
            self._slots.put(None)  # an empty slot: a worker is started when first needed
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_all, self._live, self._lock)

    def decode(
        self,
        data: IsolatedSource,
        *,
        sample_rate: int,
        name: str | None = None,
        timeout_s: float | None = None,
        limits: AudioLimits | None = None,
    ) -> np.ndarray:
        """Decode bytes, a local file or a binary file object in a worker process.

        Args:
            data: the encoded audio (bytes, a local path, or a readable binary file,
                which is read here). URLs are refused: the server never fetches them.
            sample_rate: the rate to resample to.
            name: how to name the source in messages (default: the path, or ``<N bytes>``).
            timeout_s: deadline for this call (default: the pool's).
            limits: limits for this call (default: the pool's).

        Returns:
            float32 mono samples, as :func:`earmark.audio.decode` returns them;
            its :class:`~earmark.audio.AudioWarning` warnings are re-raised here.

        Raises:
            DecodeTimeout: the worker ran past the deadline (it was killed).
            AudioError: the audio is unusable, or the decoder crashed on it.
        """
        return self._run(data, sample_rate=sample_rate, name=name, timeout_s=timeout_s, limits=limits)

    def start(self) -> None:
        """Start every worker now instead of when first needed.

        A server does this while it warms up, so that its first burst of uploads neither waits for a
        worker to start nor shares the CPU with one starting.

        Raises:
            DecoderUnavailable: a worker did not start.
        """
        barrier = threading.Barrier(self.workers)

        def one() -> None:
            try:
                worker = self._acquire()
            except BaseException:
                barrier.abort()
                raise
            try:  # held until every slot has its worker, so no thread takes another's
                barrier.wait(self.start_timeout_s)
            except threading.BrokenBarrierError:
                pass  # another start failed; its error is raised below
            finally:
                self._release(worker, True)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="earmark-decoder-start") as pool:
            started = [pool.submit(one) for _ in range(self.workers)]
        for future in started:
            future.result()

    def _run(
        self,
        data: IsolatedSource,
        *,
        sample_rate: int,
        name: str | None,
        timeout_s: float | None,
        limits: AudioLimits | None,
        fault: str | None = None,
    ) -> np.ndarray:
        """:meth:`decode`, plus ``fault`` for tests only: "segv" makes the worker kill itself with SIGSEGV."""
        limits = limits or self.limits
        timeout_s = timeout_s or self.timeout_s
        name = audio.source_name(data, name)
        request, payload = _request(data, name, sample_rate, limits, fault)
        worker = self._acquire()
        healthy = False
        try:
            samples, notes = worker.call(request, payload, name, timeout_s, _max_samples(limits, sample_rate))
            healthy = True
        except AudioError as ex:
            healthy = worker.alive() and not isinstance(ex, DecodeTimeout)
            raise
        finally:
            self._release(worker, healthy)
        for note in notes:
            warnings.warn(note, AudioWarning, stacklevel=3)
        return samples

    def _acquire(self) -> _Worker:
        slot = self._slots.get()
        if self._closed:
            self._slots.put(slot)
            raise DecoderUnavailable(
                "the audio decoder is shut down (the server is stopping); nothing was decoded"
            )
        if slot is not None and slot.alive():
            return slot
        if slot is not None:  # died while idle (OOM killer, ...): not the next file's fault
            log.warning("decoder worker %d died while idle; starting another", slot.pid)
            self._forget(slot)
        try:
            worker = _Worker.start(self.start_timeout_s, self.memory_limit_bytes)
        except BaseException:
            self._slots.put(None)
            raise
        with self._lock:
            self._live.add(worker)
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if healthy and not self._closed and worker.tasks < self.max_tasks_per_worker:
            self._slots.put(worker)
            return
        self._forget(worker)
        self._slots.put(None)

    def _forget(self, worker: _Worker) -> None:
        worker.stop()
        with self._lock:
            self._live.discard(worker)

    def close(self) -> None:
        """Stop every worker; calls in flight are cut off with an error. Idempotent."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> DecoderPool:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop_all(live: set[_Worker], lock: threading.Lock) -> None:
    with lock:
        workers = list(live)
        live.clear()
    for worker in workers:
        worker.stop()


def _max_samples(limits: AudioLimits, sample_rate: int) -> int:
    """The most samples a worker may announce (so a bad header cannot make us allocate wildly)."""
    if limits.max_duration_s is None:
        return 1 << 34
    return int(limits.max_duration_s * sample_rate) + sample_rate


def _request(
    data: IsolatedSource, name: str, sample_rate: int, limits: AudioLimits, fault: str | None
) -> tuple[dict[str, Any], bytes | memoryview | None]:
    """The JSON request for a worker and the bytes that go with it (if any)."""
    request: dict[str, Any] = {
        "sample_rate": int(sample_rate),
        "name": name,
        "limits": dataclasses.asdict(limits),
        "fault": fault,
        "path": None,
    }
    if isinstance(data, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(data))
        if is_url(path):
            raise AudioError(name, "URLs are not accepted here; send the file itself")
        request["path"] = os.path.abspath(path)
        return request, None
    if isinstance(data, (bytes, bytearray, memoryview)):
        payload: bytes | memoryview = memoryview(data).cast("B")
    elif callable(getattr(data, "read", None)):
        cap = limits.max_bytes
        payload = data.read() if cap is None else data.read(cap + 1)
    else:
        raise TypeError(
            f"cannot decode a {type(data).__name__} in a worker; pass bytes, a path or a binary file"
        )
    if limits.max_bytes is not None and len(payload) > limits.max_bytes:
        raise AudioError(name, f"is over the {size_text(limits.max_bytes)} limit")
    return request, payload


class _Worker:
    """One decoder process and its two pipes (only one thread uses it at a time)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.pid, self.tasks = proc, proc.pid, 0
        self.tx = Connection(os.dup(proc.stdin.fileno()), readable=False)
        self.rx = Connection(os.dup(proc.stdout.fileno()), writable=False)
        proc.stdin.close()
        proc.stdout.close()

    @classmethod
    def start(cls, timeout_s: float, memory_limit_bytes: int | None = None) -> _Worker:
        env = dict(os.environ)
        env["EARMARK_WORKER_MEMORY_BYTES"] = str(memory_limit_bytes or 0)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        code = "from earmark.audio._worker import main; main()"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        worker = cls(proc)
        try:
            if not worker.rx.poll(timeout_s) or _header(worker.rx).get("ready") != proc.pid:
                raise OSError("no ready message")
        except (OSError, EOFError, ValueError) as ex:
            worker.stop()
            raise DecoderUnavailable(
                f"the audio decoder process did not start within {timeout_s:g} s ({ex}; exit code "
                f"{proc.returncode}); its error output is in this process's stderr"
            ) from None
        log.debug("decoder worker %d started", proc.pid)
        return worker

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(
        self,
        request: dict[str, Any],
        payload: bytes | memoryview | None,
        name: str,
        timeout_s: float,
        cap: int,
    ) -> tuple[np.ndarray, list[str]]:
        """Run one request; returns ``(samples, warning messages)``."""
        self.tasks += 1
        deadline = time.monotonic() + timeout_s
        try:
            self.tx.send_bytes(
                json.dumps({**request, "nbytes": None if payload is None else len(payload)}).encode()
            )
            if payload is not None:
                self.tx.send_bytes(payload)
            head = self._next_header(deadline, name, timeout_s)
            if "error" in head:
                raise AudioError(name, str(head["error"]))
            n = int(head["samples"])
            if not 0 <= n <= cap:
                raise ValueError(f"bad sample count {n}")
            out = np.empty(n, dtype=np.float32)
            view, got = out.data.cast("B"), 0
            while got < view.nbytes:
                self._wait(deadline, name, timeout_s)
                got += self.rx.recv_bytes_into(view[got:])
            return out, [str(w) for w in head.get("warnings", [])]
        except (OSError, EOFError, ValueError, KeyError, TypeError) as ex:
            raise self._crashed(name, ex) from None

    def _next_header(self, deadline: float, name: str, timeout_s: float) -> dict[str, Any]:
        self._wait(deadline, name, timeout_s)
        return _header(self.rx)

    def _wait(self, deadline: float, name: str, timeout_s: float) -> None:
        if not self.rx.poll(max(0.0, deadline - time.monotonic())):
            log.warning("decoding %s took over %g s; killing decoder worker %d", name, timeout_s, self.pid)
            self.stop(force=True)
            raise DecodeTimeout(name, f"took longer than {timeout_s:g} s to decode, so it was stopped")

    def _crashed(self, name: str, ex: BaseException) -> AudioError:
        self.stop(force=True)
        code = self.proc.returncode
        how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        log.warning("decoder worker %d failed on %s (%s; %r)", self.pid, name, how, ex)
        return AudioError(name, f"the decoder crashed on this file ({how})")

    def stop(self, *, force: bool = False) -> None:
        """End the process (asking an idle one politely, unless ``force``) and close the pipes."""
        if self.proc.poll() is None:
            try:
                if force:
                    raise OSError("forced")
                self.tx.send_bytes(b"null")  # an idle worker exits at once
                self.proc.wait(0.5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for conn in (self.tx, self.rx):
            conn.close()


def _header(rx: Connection) -> dict[str, Any]:
    value = json.loads(rx.recv_bytes(_HEADER_MAX))
    if not isinstance(value, dict):
        raise TypeError("bad header")
    return value


_default_pool: DecoderPool | None = None
_default_lock = threading.Lock()


def decode_isolated(
    data: IsolatedSource,
    *,
    sample_rate: int,
    timeout_s: float = 30.0,
    limits: AudioLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> np.ndarray:
    """Decode in a shared process-wide :class:`DecoderPool` (two workers, started on first use).

    Args and errors as :meth:`DecoderPool.decode`.
    """
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = DecoderPool(workers=2)
            atexit.register(_default_pool.close)
        pool = _default_pool
    return pool.decode(data, sample_rate=sample_rate, name=name, timeout_s=timeout_s, limits=limits)
