"""Where events go: stdout, a JSON Lines file, a webhook; fed from the persisted outbox.

Each sink has a :class:`Dispatcher` thread that takes the sink's oldest outbox
message, sends it, and deletes it only once the sink took it; a failure leaves
it in place and retries with exponential backoff (at least once, in order,
keyed by event id). MQTT lives in :mod:`earmark.monitor.mqtt`.

Only results and event metadata leave the machine; a webhook sends the audio
clip only when ``send_clips`` is set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..backoff import backoff_delay_s
from .events import EventLog, OutboxItem

__all__ = [
    "Dispatcher",
    "JsonlSink",
    "RetryOptions",
    "Sink",
    "SinkError",
    "StdoutSink",
    "WebhookOptions",
    "WebhookSink",
    "public_payload",
]

log = logging.getLogger("earmark")


class SinkError(Exception):
    """A sink could not take a message now; it is retried later."""


class Sink(Protocol):
    """What the dispatcher needs from a sink; ``name`` keys its outbox rows."""

    name: str

    def start(self) -> None: ...

    def send(self, item: OutboxItem) -> None:
        """Deliver one message or raise :class:`SinkError`."""
        ...

    def close(self) -> None: ...


PRIVATE_KEYS = ("clip_path",)


def public_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The message without what only this machine needs (the clip's local path)."""
    return {k: v for k, v in payload.items() if k not in PRIVATE_KEYS}


def describe(payload: dict[str, Any]) -> str:
    """One line for people: ``12:00:01 kitchen  glass breaking  started (peak 0.93)  ev_...``.

    A source that is not real time (a file read as fast as possible, a pipe fed faster
    than real time) is timed by its stream position instead: ``00:00:14.2``.
    """
    end = payload["event"] == "end"
    if payload.get("clock") == "stream":
        when = stream_position(payload.get("end_s" if end else "start_s") or 0.0)
    else:
        when = (payload.get("end" if end else "start") or "")[11:19]
    verb = "ended" if end else "started"
    extra = f", {payload['end_s'] - payload['start_s']:.1f} s" if payload.get("end_s") is not None else ""
    return (
        f"{when}  {payload['source']}  {payload['label']}  {verb} (peak {payload['peak']:.2f}{extra})"
        f"  {payload['id']}"
    )


def stream_position(seconds: float) -> str:
    """Seconds from the start of a source as ``HH:MM:SS.s`` (``00:00:14.2``)."""
    tenths = int(round(float(seconds) * 10))
    h, rest = divmod(tenths, 36_000)
    m, rest = divmod(rest, 600)
    return f"{h:02d}:{m:02d}:{rest // 10:02d}.{rest % 10}"


class StdoutSink:
    """Prints each message: one JSON object per line, or a line for people (``text``)."""

    def __init__(self, name: str = "stdout", *, fmt: str = "text", stream: TextIO | None = None) -> None:
        self.name, self.fmt, self._stream = name, fmt, stream

    def start(self) -> None:
        pass

    def send(self, item: OutboxItem) -> None:
        stream = self._stream or sys.stdout
        line = (
            json.dumps(item.payload, ensure_ascii=False, sort_keys=True)
            if self.fmt == "json"
            else describe(item.payload)
        )
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError) as ex:
            raise SinkError(f"cannot write to stdout: {ex}") from None

    def close(self) -> None:
        pass


class JsonlSink:
    """Appends each message as one JSON line to a file (flushed per line)."""

    def __init__(self, name: str, path: str | Path) -> None:
        self.name, self.path = name, Path(path)

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def send(self, item: OutboxItem) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(item.payload, ensure_ascii=False, sort_keys=True) + "\n")
        except OSError as ex:
            raise SinkError(f"cannot append to {self.path}: {ex.strerror or ex}") from None

    def close(self) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class WebhookOptions:
    """An HTTP POST of each message as JSON.

    Attributes:
        url: where to POST.
        secret: when set, ``X-Earmark-Signature: sha256=<hex>`` is the HMAC-SHA256
            of the raw body with this key.
        timeout_s: per request.
        headers: extra request headers (e.g. an authorization token).
        send_clips: add the event's audio clip (base64) to ``end`` messages.
    """

    url: str
    secret: str | None = None
    timeout_s: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()
    send_clips: bool = False


class WebhookSink:
    """POSTs each message; any status but 2xx (or no answer) is a failure retried later."""

    def __init__(self, name: str, options: WebhookOptions) -> None:
        self.name, self.options = name, options
        self._client: Any = None

    def start(self) -> None:
        try:
            import httpx
        except ImportError:
            from ..errors import MissingExtraError

            raise MissingExtraError("the webhook sink", "monitor") from None
        self._client = httpx.Client(timeout=self.options.timeout_s, follow_redirects=False)

    def body(self, item: OutboxItem) -> bytes:
        payload = public_payload(item.payload)
        clip = item.payload.get("clip_path")
        if self.options.send_clips and item.kind == "end" and clip and Path(clip).is_file():
            payload["clip_base64"] = base64.b64encode(Path(clip).read_bytes()).decode()
        return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()

    def send(self, item: OutboxItem) -> None:
        import httpx

        body = self.body(item)
        headers = {
            "Content-Type": "application/json",
            "X-Earmark-Event": item.event_id,
            "X-Earmark-Delivery": f"{item.event_id}:{item.kind}",
            **dict(self.options.headers),
        }
        if self.options.secret:
            digest = hmac.new(self.options.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Earmark-Signature"] = "sha256=" + digest
        try:
            r = self._client.post(self.options.url, content=body, headers=headers)
        except httpx.HTTPError as ex:
            raise SinkError(f"webhook not reachable: {type(ex).__name__}") from None
        if not 200 <= r.status_code < 300:
            raise SinkError(f"webhook answered HTTP {r.status_code}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass(frozen=True, kw_only=True)
class RetryOptions:
    """Backoff between delivery attempts: ``initial_s`` doubling to ``max_s``, with jitter."""

    initial_s: float = 1.0
    max_s: float = 60.0

    def delay_s(self, attempts: int, rng: random.Random) -> float:
        return backoff_delay_s(attempts, initial_s=self.initial_s, max_s=self.max_s, rng=rng)


class Dispatcher(threading.Thread):
    """Feeds one sink from the outbox, oldest first, until stopped.

    Args:
        sink: the sink.
        events: the event log holding the outbox.
        retry: backoff between attempts.
        on_result: called with ``(sink name, ok)`` after each attempt (metrics).
    """

    def __init__(
        self, sink: Sink, events: EventLog, *, retry: RetryOptions = RetryOptions(), on_result: Any = None
    ) -> None:
        super().__init__(name=f"earmark-sink-{sink.name}", daemon=True)
        self.sink, self.events, self.retry = sink, events, retry
        self._on_result = on_result
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._hurry = False  # flushing at shutdown: do not sit out long backoffs
        self._rng = random.Random()

    def wake(self) -> None:
        """New messages are queued."""
        self._wake.set()

    def run(self) -> None:
        try:
            self.sink.start()
        except Exception as ex:  # noqa: BLE001 (a sink that cannot start must not stop detection)
            log.error("sink %s: cannot start: %s", self.sink.name, ex)
        while not self._halt.is_set():
            try:
                wait = self._step()
            except Exception:  # keep dispatching whatever one message did
                log.exception("sink %s: unexpected error", self.sink.name)
                wait = 1.0
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
        try:
            self.sink.close()
        except Exception as ex:  # noqa: BLE001 (closing is best effort)
            log.warning("sink %s: error while closing: %s", self.sink.name, ex)

    def _step(self) -> float:
        item = self.events.head(self.sink.name)
        if item is None:
            return 0.5
        due_in = item.next_at - time.time()
        if due_in > 0 and (not self._hurry or due_in <= 1.0):
            return min(due_in, 0.5)  # (while flushing, a long backoff is cut short: one more try now)
        try:
            self.sink.send(item)
        except SinkError as ex:
            delay = self.retry.delay_s(item.attempts, self._rng)
            self.events.failed(item.seq, str(ex), delay)
            log.warning("sink %s: %s; event %s retried in %.1f s", self.sink.name, ex, item.event_id, delay)
            self._report(False)
            return 1.0 if self._hurry else 0.0  # flushing: one try a second, never a tight loop
        self.events.delivered(item.seq)
        self._report(True)
        return 0.0

    def _report(self, ok: bool) -> None:
        if self._on_result is not None:
            self._on_result(self.sink.name, ok)

    def flush(self, timeout_s: float) -> bool:
        """Try to deliver everything queued within ``timeout_s``; True when the sink's outbox is empty."""
        self._hurry = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.events.pending(self.sink.name) == 0:
                return True
            self.wake()
            time.sleep(0.05)
        return self.events.pending(self.sink.name) == 0

    def stop(self, timeout_s: float = 5.0) -> None:
        self._halt.set()
        self.wake()
        self.join(timeout_s)
