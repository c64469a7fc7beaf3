"""Connection limits for ``earmark serve``: a header deadline, a cap on open connections, quiet logs.

uvicorn on its own has no deadline for request headers and no cap on open
connections (``limit_concurrency`` answers 503 only once headers have arrived),
so 20 000 loopback connections that never finish their headers exhausted the
process's file descriptors, ``/livez`` went dead and the log grew by 100 MB a
minute of "Too many open files". The API key cannot help: it is checked after
the headers. Here, below the app:

- :func:`guarded_protocol` wraps uvicorn's HTTP protocol: a connection past
  ``max_connections`` is answered 503 and closed at once; a connection whose
  request headers are not complete ``header_timeout_s`` after it opened (or after
  its previous response) is answered 408 and closed.
- :func:`raise_fd_limit` lifts the soft file-descriptor limit to the hard one;
  :func:`connection_cap` keeps ``max_connections`` well below it and
  :func:`accept_backlog` bounds how many connections asyncio accepts in one burst
  (before any can be refused), so the cap is reached before the process runs out
  of descriptors.
- :func:`quiet_accept_errors` lets one "out of system resource" accept error
  through to the log per interval, with a count of those held back.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = [
    "ConnectionGuard",
    "accept_backlog",
    "connection_cap",
    "guarded_protocol",
    "quiet_accept_errors",
    "raise_fd_limit",
]

log = logging.getLogger("earmark")

LOG_EVERY_S = 30.0

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: %d\r\n\r\n%s"
)
_SLOW = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def _response(template: bytes, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return template % (len(body), body)


BUSY_RESPONSE = _response(
    _BUSY, "too_many_connections", "the server has as many connections open as it allows"
)
SLOW_RESPONSE = _response(_SLOW, "header_timeout", "the request headers did not arrive in time")


class _Every:
    """Lets a log line through once per ``interval_s``; counts what it held back."""

    def __init__(self, interval_s: float = LOG_EVERY_S) -> None:
        self.interval_s = interval_s
        self._last = -float("inf")
        self.held = 0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            return True
        self.held += 1
        return False


class ConnectionGuard:
    """Counts open connections for one server and says which to refuse.

    Args:
        max_connections: open connections allowed at once; more are answered 503 and closed.
        header_timeout_s: time a connection has to complete its request headers.
    """

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open: set[Any] = set()
        self.refused = 0
        self.timed_out = 0
        self._log = _Every()

    def admit(self, transport: Any) -> bool:
        """Record a new connection; False when it must be refused."""
        if len(self.open) >= self.max_connections:
            # a connection upgraded to a websocket leaves its HTTP protocol without a goodbye: prune by state
            self.open = {t for t in self.open if not t.is_closing()}
        if len(self.open) >= self.max_connections:
            self.refused += 1
            if self._log.due():
                held, self._log.held = self._log.held, 0
                log.warning(
                    "connection limit: %d open, refusing new ones with 503 (%d refused so far, %d such "
                    "lines held back); setting max_connections",
                    len(self.open),
                    self.refused,
                    held,
                )
            return False
        self.open.add(transport)
        return True

    def release(self, transport: Any) -> None:
        self.open.discard(transport)


def guarded_protocol(guard: ConnectionGuard, base: type[Any] | None = None) -> type[Any]:
    """uvicorn's HTTP protocol class (or ``base``) with ``guard``'s limits; pass it as ``uvicorn.Config(http=...)``."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol

    class GuardedProtocol(base):  # type: ignore[misc,valid-type]
        _refused = False
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            if not guard.admit(transport):
                self._refused = True
                transport.write(BUSY_RESPONSE)
                transport.close()
                return
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            guard.release(self.transport)
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()  # the next request's headers have the same deadline

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(
                guard.header_timeout_s, self._header_deadline, self.cycle
            )

        def _header_deadline(self, cycle: Any) -> None:
            waiting = self.cycle is cycle and (cycle is None or cycle.response_complete)
            if waiting and not self.transport.is_closing():
                guard.timed_out += 1
                self.transport.write(SLOW_RESPONSE)
                self.transport.close()

    return GuardedProtocol


def raise_fd_limit() -> int:
    """Lift the soft open-file limit to the hard one (where allowed); returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 16)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(max_connections: int, fd_limit: int) -> int:
    """``max_connections``, lowered to leave a quarter (at least 64) of ``fd_limit`` to the rest of the server."""
    reserve = max(64, fd_limit // 4)
    return max(1, min(max_connections, fd_limit - reserve))


def accept_backlog(max_connections: int, fd_limit: int) -> int:
    """The listen backlog: asyncio accepts up to this many connections in one go before any is refused,
    so it must fit in the descriptors ``max_connections`` leaves free (half of them, 16 to 2048)."""
    return max(16, min(2048, (fd_limit - max_connections) // 2))


class _AcceptErrorFilter(logging.Filter):
    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._every = _Every(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "out of system resource" not in text and "Too many open files" not in text:
            return True
        if not self._every.due():
            return False
        held, self._every.held = self._every.held, 0
        record.msg = (
            f"{text} (and {held} more like it held back; at most one per {self._every.interval_s:g} s)"
        )
        record.args = ()
        record.exc_info = None  # the traceback says nothing new, and cost 100 MB a minute
        record.exc_text = None
        return True


def quiet_accept_errors(interval_s: float = LOG_EVERY_S) -> None:
    """Let one "Too many open files" accept error per ``interval_s`` reach the log (asyncio logs every one)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _AcceptErrorFilter) for f in logger.filters):
        logger.addFilter(_AcceptErrorFilter(interval_s))
