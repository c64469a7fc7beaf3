"""Server settings: one table, each with a default and help text.

``earmark serve --setting NAME VALUE`` changes any of them; ``docs/server.md``
documents every one (a test checks that no setting goes undocumented).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigError

__all__ = ["SETTINGS", "ServerSettings", "is_loopback", "parse_setting"]


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """How ``earmark serve`` behaves. See :data:`SETTINGS` for what each one means."""

    max_upload_mb: float = 50.0
    max_duration_s: float = 600.0
    max_windows: int = 600
    decode_workers: int = 2
    decode_timeout_s: float = 30.0
    max_queue: int = 32
    max_batch_size: int = 0
    max_wait_ms: float = 5.0
    request_timeout_s: float = 60.0
    drain_delay_s: float = 0.0
    warmup_timeout_s: float = 300.0
    live_window_s: float = 10.0
    live_every_s: float = 2.0
    live_sessions: int = 8
    max_connections: int = 500
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 5.0
    api_key: str | None = dataclasses.field(default=None, repr=False)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def capacity(self) -> int:
        """Requests the server holds at once (decoding, waiting or on the model); more get 429."""
        return self.decode_workers + self.max_queue

    def check(self) -> ServerSettings:
        """Raise ConfigError on values that cannot work; returns self."""
        positive = (
            "max_upload_mb",
            "max_duration_s",
            "decode_timeout_s",
            "request_timeout_s",
            "warmup_timeout_s",
            "live_window_s",
            "live_every_s",
            "header_timeout_s",
            "keepalive_timeout_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} must be positive")
        for name in ("decode_workers", "live_sessions", "max_windows", "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"setting {name} must be at least 1")
        for name in ("max_queue", "max_batch_size", "max_wait_ms", "drain_delay_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"setting {name} cannot be negative")
        if self.live_window_s > 10:
            raise ConfigError("setting live_window_s is at most 10 (the model's window)")
        return self


# name -> help text; the one table users read (docs/server.md repeats it)
SETTINGS: dict[str, str] = {
    "max_upload_mb": "Largest request body in MB; bigger uploads get 413 before they are read.",
    "max_duration_s": "Longest audio one request may hold, in seconds (checked on decoded samples).",
    "max_windows": (
        "Most analysis windows one request may make (duration / hop_s); past it the request gets 422 "
        "before any model work. hop_s is at least 0.25 s everywhere."
    ),
    "decode_workers": "Worker processes that decode uploads; a hostile file can cost one of them, never the server.",
    "decode_timeout_s": "Wall-clock limit for decoding one upload; past it the worker is killed and the request gets 504.",
    "max_queue": "Requests that may wait beyond those being decoded; when full, new requests get 429 at once.",
    "max_batch_size": (
        "Audio windows per model call; windows of concurrent requests are coalesced, and every call is padded "
        "to this size so a result never depends on its batch. 0: the backend's batch size (8 on a GPU, 1 on a "
        "CPU), as every other command uses; a value only lowers it."
    ),
    "max_wait_ms": "How long a batch waits for more windows while other requests are still decoding, in ms.",
    "request_timeout_s": "Deadline for a whole request (decode + model); past it the request gets 504.",
    "warmup_timeout_s": (
        "Deadline of one start-up warm-up attempt (every decode worker started, a decode and a model pass); "
        "not a client deadline. A failed attempt is logged and retried with backoff, and /readyz says what it waits for."
    ),
    "drain_delay_s": "On SIGTERM, /readyz answers 503 this long before the server stops accepting requests.",
    "live_window_s": "Live tab: seconds of microphone audio each classification hears (at most 10).",
    "live_every_s": "Live tab: classify the last window every this many seconds of audio.",
    "live_sessions": "Live tab: microphone streams handled at once.",
    "max_connections": (
        "Open connections served at once; more are answered 503 and closed before their headers are read "
        "(lowered at start to leave a quarter of the open-file limit to the server)."
    ),
    "header_timeout_s": "A connection must complete its request headers this soon after it opens (or after its "
    "previous answer); otherwise it gets 408 and is closed.",
    "keepalive_timeout_s": "An idle kept-alive connection is closed after this many seconds.",
    "api_key": "Bearer key every request must carry (set by --api-key or EARMARK_API_KEY, not by --setting).",
}


def parse_setting(settings: ServerSettings, name: str, value: str) -> ServerSettings:
    """Return ``settings`` with ``name`` set from its text ``value`` (typed like the default)."""
    known = {f.name: f for f in fields(ServerSettings)}
    if name not in known or name == "api_key":
        choices = ", ".join(n for n in SETTINGS if n != "api_key")
        raise ConfigError(f"unknown setting {name!r}; expected one of: {choices}")
    current: Any = getattr(settings, name)
    try:
        typed = int(value) if isinstance(current, int) else float(value)
    except ValueError:
        kind = "a whole number" if isinstance(current, int) else "a number"
        raise ConfigError(f"setting {name} must be {kind}, not {value!r}") from None
    changes: dict[str, Any] = {name: typed}
    return dataclasses.replace(settings, **changes).check()


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: could resolve anywhere
