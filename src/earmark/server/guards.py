"""What may come in: an API key when one is set, a cap on request bodies, bounded work per request.

The first two are pure ASGI middleware, so they cover every route, the Gradio
page's upload and queue routes included, and run before any body is read;
:func:`check_window_count` bounds the model work one request may ask for.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..types import ClassifyOptions, window_count

__all__ = ["ApiKeyMiddleware", "BodyLimitMiddleware", "check_window_count", "json_error"]

Scope = dict[str, Any]

# answered without a key, so load balancers and probes work
OPEN_PATHS = frozenset({"/livez", "/readyz"})


async def json_error(
    send: Any, status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send ``{"error": {"code", "message"}}`` with ``status`` straight on the ASGI channel."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: by Content-Length before reading, or as the stream passes the cap.

    The app never sees more than ``max_bytes`` of a body: once the cap is passed,
    ``receive`` reports a disconnect, and whatever the app then tries to answer is
    replaced by the 413.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"the upload is larger than the {self.max_bytes / 1e6:g} MB limit"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await json_error(send, 413, "upload_too_large", self._message())
            return
        seen = 0
        over = False
        started = False

        async def capped_receive() -> dict[str, Any]:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if over:
                if not started:
                    started = True
                    await json_error(send, 413, "upload_too_large", self._message())
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await json_error(send, 413, "upload_too_large", self._message())


class ApiKeyMiddleware:
    """Every request but the health probes carries the key.

    Accepted forms: ``Authorization: Bearer KEY`` (scripts), or HTTP Basic with the
    key as password and any user name (browsers ask for it themselves, then send
    it with every request of the page, its websocket and event streams included).
    """

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._allowed(_header(scope, b"authorization") or ""):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = [(b"www-authenticate", b'Bearer realm="earmark", Basic realm="earmark"')]
        await json_error(
            send, 401, "unauthorized", "this server needs an API key: Authorization: Bearer KEY", challenge
        )

    def _allowed(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return secrets.compare_digest(value.strip().encode(), self.key)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            return secrets.compare_digest(decoded.partition(b":")[2], self.key)
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def check_window_count(duration_s: float, options: ClassifyOptions, max_windows: int) -> int:
    """The number of windows ``duration_s`` of audio makes with ``options``; refused past ``max_windows``.

    Raises:
        ConfigError: more than ``max_windows`` windows (the server answers 422, before any model work).
    """
    count = window_count(duration_s, options.window_s, options.hop_s)
    if count > max_windows:
        raise ConfigError(
            f"{duration_s:.0f} s of audio at hop_s={options.hop_s:g} makes {count} windows; this server "
            f"takes at most {max_windows} per request (setting max_windows): use a larger hop_s or shorter audio"
        )
    return count
