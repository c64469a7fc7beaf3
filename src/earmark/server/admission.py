"""429 at the door: a full server refuses an upload before reading or decoding its body.

The engine's :class:`~earmark.server.batching.Admission` counts requests that
hold a place (decoding, waiting, on the model), but a request only asks for its
place after its body has been read: 136 simultaneous uploads got their 429s
after 2.4-6.1 s, each having first been received and parsed in full. This ASGI
middleware counts the uploads under way on the heavy routes and answers 429
(with ``Retry-After``) as soon as their headers arrive when the server already
holds as many requests as it may, so an excess request costs neither reading
nor decoding.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["HEAVY_ROUTES", "AdmissionMiddleware"]

# between the 429's headers and its body, the refused upload is read and dropped up to these bounds: a client
# that sent "Connection: close" is still sending, and closing a socket with unread data resets it, which
# destroyed the 429 before the client read it (bench/bench_overload.py: no status for whole bursts). It must
# happen before the body is sent: once the response is complete, the server stops reading the request.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_S = 30.0

HEAVY_ROUTES = frozenset({"/api/v1/classify", "/api/v1/embed", "/api/predict"})
"""POST routes whose bodies are uploads that go to the model."""


class AdmissionMiddleware:
    """Refuses uploads to :data:`HEAVY_ROUTES` with 429 before their bodies are read when the server is full.

    Full means: the uploads under way here, or the places the engine holds (the
    page's requests included), reach ``capacity``.

    Args:
        app: the ASGI app (its ``state.engine`` is read per request).
        capacity: requests the server holds at once (``ServerSettings.capacity``).
    """

    def __init__(self, app: Any, capacity: int) -> None:
        self.app = app
        self.capacity = capacity
        self.inflight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in HEAVY_ROUTES:
            await self.app(scope, receive, send)
            return
        engine = getattr(getattr(scope.get("app"), "state", None), "engine", None)
        held = engine.admission.held if engine is not None else 0
        if self.inflight >= self.capacity or held >= self.capacity:
            retry = engine.admission.retry_after_s() if engine is not None else 1
            await _busy(receive, send, retry)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


async def _busy(receive: Any, send: Any, retry_after_s: int) -> None:
    """The 429: its headers at once, then the refused body read and dropped (bounded), then its body.

    No ``connection: close`` of our own: a keep-alive client keeps its connection. Completing the response
    only after the drain matters for a client that asked to close: the server then closes a socket with
    nothing left unread, so the client, still sending, reads its answer instead of a reset.
    """
    message = f"the server is busy; try again in {retry_after_s} s"
    body = json.dumps({"error": {"code": "server_busy", "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after_s).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await _drain(receive)
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Any) -> None:
    """Read and drop what the refused client still sends, bounded in bytes and time."""

    async def run() -> None:
        left = DRAIN_BYTES
        while left > 0:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            left -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    try:
        await asyncio.wait_for(run(), DRAIN_S)
    except TimeoutError:
        pass  # past the bound the connection is closed under the client
