"""The decoder process behind :class:`earmark.audio.isolate.DecoderPool` (runs in the worker, not the caller).

Protocol, one request at a time: the parent sends a JSON request (and the
encoded bytes, if any); the worker answers a JSON header (``{"error": reason}``
or ``{"samples": n, "warnings": [...]}``) followed by the float32 samples as
raw bytes. JSON and raw bytes only, so the parent never unpickles anything a
compromised worker could craft.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import warnings
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .. import audio
from ..errors import AudioError
from . import AudioLimits, AudioWarning

log = logging.getLogger("earmark")


def main() -> None:
    """Entry point of a decoder process: requests on stdin, answers on stdout."""
    rx = Connection(os.dup(0), writable=False)
    tx = Connection(os.dup(1), readable=False)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # stray prints go to stderr, never into the answers
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _limit_memory()
    _watch_parent(os.getppid())
    tx.send_bytes(json.dumps({"ready": os.getpid()}).encode())
    while True:
        try:
            request = json.loads(rx.recv_bytes())
        except EOFError:
            return
        if request is None:
            return
        payload = None
        if request["nbytes"] is not None:
            payload = bytearray(request["nbytes"])
            rx.recv_bytes_into(payload)
        _serve(request, payload, tx)


def _serve(request: dict[str, Any], payload: bytearray | None, tx: Connection) -> None:
    if request.get("fault") == "segv":  # test-only (DecoderPool._run): a real segfault signal
        os.kill(os.getpid(), signal.SIGSEGV)
    source: Any = request["path"] if payload is None else payload
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AudioWarning)
            chunks = list(
                audio.stream(
                    source,
                    sample_rate=request["sample_rate"],
                    name=request["name"],
                    limits=AudioLimits(**request["limits"]),
                )
            )
    except AudioError as ex:
        tx.send_bytes(json.dumps({"error": ex.reason}).encode())
        return
    except MemoryError:
        tx.send_bytes(json.dumps({"error": "needs more memory than one decode may use"}).encode())
        return
    except Exception as ex:  # a decoder bug must answer, not kill the worker
        log.exception("decoder worker: unexpected error")
        tx.send_bytes(
            json.dumps(
                {
                    "error": f"could not be decoded: the decoder failed on this file in a way it does not report ({type(ex).__name__})"
                }
            ).encode()
        )
        return
    notes = [str(w.message) for w in caught if issubclass(w.category, AudioWarning)]
    tx.send_bytes(json.dumps({"samples": sum(c.size for c in chunks), "warnings": notes}).encode())
    for chunk in chunks:
        tx.send_bytes(np.ascontiguousarray(chunk, dtype=np.float32).data)


def _limit_memory() -> None:
    """Cap this process's address space, so a decompression bomb fails here, not in the server."""
    cap = int(os.environ.get("EARMARK_WORKER_MEMORY_BYTES", "0") or 0)
    if cap > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone, even in the middle of a hung decode."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="earmark-parent-watch", daemon=True).start()
