"""Decoding uploads in worker processes with a wall-clock timeout.

The server never decodes an untrusted upload in its own process: a file that
makes FFmpeg hang, crash or eat memory costs one worker, which is killed and
replaced, never the server.

``DecoderPool`` is ``earmark.isolate.DecoderPool`` when that module exists (the
audio feature's pool). Until it lands, :class:`LocalDecoderPool` below is a
minimal working pool with the same API; at merge, delete it and import
``earmark.isolate.DecoderPool`` directly.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..audio import DEFAULT_LIMITS, AudioLimits
from ..errors import AudioError, DecodeTimeout

__all__ = ["DecoderPool", "LocalDecoderPool", "read_message", "write_message"]

log = logging.getLogger("earmark")

Data = Union[bytes, str, "os.PathLike[str]"]
_HEADER = struct.Struct(">Q")
# a decode worker may use this much address space; a hostile file hits it and fails alone
WORKER_MEMORY_BYTES = 4 * 1024**3


def write_message(fd: int, obj: object) -> None:
    """Length-prefixed pickle on a pipe (between earmark and its own worker only)."""
    payload = pickle.dumps(obj, protocol=5)
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def read_message(fd: int, deadline: float | None = None) -> object:
    """Read one message; ``TimeoutError`` past ``deadline`` (monotonic), ``EOFError`` if the pipe closed."""
    header = _read_exact(fd, _HEADER.size, deadline)
    (size,) = _HEADER.unpack(header)
    return pickle.loads(_read_exact(fd, size, deadline))


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    parts: list[bytes] = []
    while n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


class _Worker:
    """One decode process: ``python -m earmark.server._decode_worker``."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # the child must import this same earmark, wherever it was imported from
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        env["EARMARK_WORKER_MEMORY_BYTES"] = str(WORKER_MEMORY_BYTES)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "earmark.server._decode_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()

    def run(self, request: tuple[Any, ...], timeout_s: float) -> Any:
        write_message(self._in, request)
        return read_message(self._out, time.monotonic() + timeout_s)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def stop(self, timeout_s: float = 2.0) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # EOF: the worker exits on its own
            self.proc.wait(timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class LocalDecoderPool:
    """Worker processes that decode audio into float32 mono at a given rate.

    Args:
        workers: processes decoding at once; callers beyond that wait their turn.
        timeout_s: wall-clock limit per decode; past it the worker is killed and
            replaced, and :class:`~earmark.errors.DecodeTimeout` is raised.
        limits: :class:`~earmark.audio.AudioLimits` applied inside the worker.
    """

    def __init__(self, workers: int = 2, timeout_s: float = 30.0, limits: AudioLimits = DEFAULT_LIMITS) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.limits = limits
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._closed = False
        for _ in range(workers):
            self._idle.put(_Worker())

    def decode(self, data: Data, *, sample_rate: int, name: str) -> np.ndarray:
        """Decode ``data`` (bytes or a file path) in a worker.

        Returns:
            1-D float32 samples at ``sample_rate``.

        Raises:
            AudioError: not decodable, over a limit, or the worker crashed on it.
            DecodeTimeout: decoding took longer than ``timeout_s``.
        """
        if self._closed:
            raise RuntimeError("the decoder pool is closed")
        source: object = os.fspath(data) if isinstance(data, (str, os.PathLike)) else bytes(data)
        worker = self._idle.get()
        try:
            reply = worker.run((source, sample_rate, name, self.limits), self.timeout_s)
        except TimeoutError:
            worker = self._replace(worker)
            raise DecodeTimeout(name, f"decoding took longer than {self.timeout_s:g} s") from None
        except (EOFError, OSError, pickle.UnpicklingError):
            worker = self._replace(worker)
            raise AudioError(name, "the decoder crashed on this file (corrupt or hostile input)") from None
        finally:
            self._idle.put(worker)
        return _unpack(reply, name)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        log.warning("decode worker %d replaced", worker.proc.pid)
        return _Worker()

    def close(self) -> None:
        """Stop every worker (waits for ones in use to be handed back, briefly)."""
        self._closed = True
        stopped = 0
        deadline = time.monotonic() + self.timeout_s
        while stopped < self.workers:
            try:
                self._idle.get(timeout=max(0.0, deadline - time.monotonic())).stop()
            except queue.Empty:
                break
            stopped += 1


def _unpack(reply: Any, name: str) -> np.ndarray:
    kind = reply[0]
    if kind == "ok":
        for message in reply[2]:
            log.warning("%s", message)
        return np.asarray(reply[1], dtype=np.float32)
    if kind == "audio_error":
        raise AudioError(reply[1], reply[2])
    raise AudioError(name, "the decoder failed on this file")


def _pool_class() -> Any:
    try:  # the audio feature's pool, when present, is the one to use
        from ..isolate import DecoderPool as pool  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return LocalDecoderPool
    return pool


DecoderPool: Any = _pool_class()
