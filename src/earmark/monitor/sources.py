"""Live audio in: files, FFmpeg URLs, raw PCM on stdin, the microphone; with reconnects.

Every source is read by its own thread (:class:`SourceWorker`), so a slow or
dead source never stalls another. A reader is a generator of float32 mono
chunks at the model's rate. When it drops (error, end of a live stream, no
audio for ``watchdog_s``), the worker waits with exponential backoff and jitter
(``initial_s`` doubling to ``max_s``) and connects again; once a connection has
delivered audio for ``healthy_s`` the backoff starts over. Credentials in URLs
never reach a log line or an error message (:func:`mask_url`).
"""

from __future__ import annotations

import logging
import os
import random
import re
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from .. import audio as _audio
from ..audio.pcm import Mixdown, Output, downmix, to_float32
from ..audio.sources import ffmpeg_reason
from ..backoff import backoff_delay_s
from ..errors import AudioError, ConfigError, MissingExtraError

__all__ = ["ReconnectOptions", "SourceLost", "SourceSpec", "SourceWorker", "mask_url", "open_reader"]

log = logging.getLogger("earmark")

SourceKind = Literal["file", "url", "stdin", "microphone"]
PCM_FORMATS: dict[str, np.dtype[Any]] = {
    "s16le": np.dtype("<i2"),
    "s32le": np.dtype("<i4"),
    "f32le": np.dtype("<f4"),
}
_SECRET_PARAMS = re.compile(r"pass|pwd|token|key|secret|auth|sig|cred", re.IGNORECASE)
CHUNK_S = 0.5


class SourceLost(Exception):
    """A source stopped delivering audio; the worker reconnects (message is credential-free)."""


@dataclass(frozen=True, kw_only=True)
class ReconnectOptions:
    """How a dropped or stalled source comes back.

    Attributes:
        initial_s: first wait before reconnecting.
        max_s: longest wait (the backoff cap).
        healthy_s: delivering audio this long resets the backoff to ``initial_s``.
        watchdog_s: no audio for this long counts as a drop.
        open_timeout_s: network timeout to open a URL.
        read_timeout_s: network timeout of one read.
    """

    initial_s: float = 1.0
    max_s: float = 60.0
    healthy_s: float = 30.0
    watchdog_s: float = 20.0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Wait before reconnect ``attempt`` (0-based): exponential, capped, with jitter in [50 %, 100 %]."""
        return backoff_delay_s(attempt, initial_s=self.initial_s, max_s=self.max_s, rng=rng)


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """One audio source.

    Attributes:
        name: names the source in events, topics and logs.
        kind: ``file``, ``url`` (anything FFmpeg opens: RTSP, HTTP/Icecast, HLS),
            ``stdin`` (raw PCM) or ``microphone``.
        target: file path, URL or microphone device ("" for the default).
        realtime: play a file at real-time speed (else as fast as possible).
        loop: start a file over at its end.
        input_rate_hz: sample rate of raw PCM or the microphone.
        channels: channels of raw PCM or the microphone (downmixed to mono).
        sample_format: raw PCM format: ``s16le``, ``s32le`` or ``f32le``.
        gate_dbfs: windows whose loudest 100 ms is below this level are skipped
            and counted, not classified (``None``: no gate).
        reconnect: see :class:`ReconnectOptions`.
        ffmpeg_options: options passed to FFmpeg when opening a URL (e.g. ``rtsp_transport: tcp``).
    """

    name: str
    kind: SourceKind
    target: str = ""
    realtime: bool = True
    loop: bool = False
    input_rate_hz: int = 16_000
    channels: int = 1
    sample_format: str = "s16le"
    gate_dbfs: float | None = -70.0
    reconnect: ReconnectOptions = ReconnectOptions()
    ffmpeg_options: tuple[tuple[str, str], ...] = ()

    @property
    def finite(self) -> bool:
        """A file (not looped) or stdin ends; live sources only drop."""
        return (self.kind == "file" and not self.loop) or self.kind == "stdin"


def mask_url(url: str) -> str:
    """``rtsp://user:pw@cam/x?token=abc`` -> ``rtsp://***@cam/x?token=***``: safe to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _scrub(text: str, url: str) -> str:
    """Remove a URL and its secrets from an error message (FFmpeg messages quote the URL)."""
    parts = urlsplit(url)
    out = text.replace(url, mask_url(url))
    for secret in (
        parts.password,
        parts.username,
        *(v for k, v in parse_qsl(parts.query) if _SECRET_PARAMS.search(k)),
    ):
        if secret and len(secret) > 2:
            out = out.replace(secret, "***")
    return out


Reader = Iterator[np.ndarray]


def open_reader(
    spec: SourceSpec, rate: int, stop: threading.Event, *, stdin: BinaryIO | None = None
) -> Reader:
    """One connection to a source: float32 mono chunks at ``rate`` until it ends or drops.

    Raises:
        SourceLost: the connection dropped or stalled (retry).
        AudioError: a file cannot be read (not retried).
    """
    if spec.kind == "file":
        return _read_file(spec, rate, stop)
    if spec.kind == "url":
        return _read_url(spec, rate, stop)
    if spec.kind == "stdin":
        import sys

        return _read_pcm(stdin or sys.stdin.buffer, spec, rate, stop)
    if spec.kind == "microphone":
        return _read_microphone(spec, rate, stop)
    raise ConfigError(f"source {spec.name!r}: unknown kind {spec.kind!r}")


def _read_file(spec: SourceSpec, rate: int, stop: threading.Event) -> Reader:
    limits = _audio.AudioLimits(max_duration_s=None)
    started, played = time.monotonic(), 0
    for chunk in _audio.stream(
        spec.target, sample_rate=rate, limits=limits, name=spec.target, chunk_s=CHUNK_S
    ):
        if spec.realtime:
            # pace to the audio clock so a file stands in for a live source: a chunk is there once it has "played"
            ahead = started + (played + chunk.size) / rate - time.monotonic()
            if ahead > 0 and stop.wait(ahead):
                return
        if stop.is_set():
            return
        played += chunk.size
        yield chunk


def _read_url(spec: SourceSpec, rate: int, stop: threading.Event) -> Reader:
    import av

    url, opts = spec.target, spec.reconnect
    timeout = (opts.open_timeout_s, min(opts.read_timeout_s, opts.watchdog_s))
    try:
        container = av.open(url, mode="r", timeout=timeout, options=dict(spec.ffmpeg_options))
    except (av.error.FFmpegError, OSError) as ex:
        raise SourceLost(_scrub(f"cannot open {url}: {ffmpeg_reason(ex)}", url)) from None
    try:
        if not container.streams.audio:
            raise SourceLost(f"{mask_url(url)} has no audio stream")
        yield from _decode_live(container, rate, opts.watchdog_s, stop, url)
    except av.error.FFmpegError as ex:
        raise SourceLost(_scrub(f"read failed: {ffmpeg_reason(ex)}", url)) from None
    finally:
        container.close()


def _decode_live(container: Any, rate: int, watchdog_s: float, stop: threading.Event, url: str) -> Reader:
    """Chunks of a live stream, mixed down and resampled exactly as a file is (:mod:`earmark.audio.pcm`).

    One downmix rule for files and streams: the mean of the channels, so a stereo
    stream has the level of the same file read by ``classify`` (FFmpeg's own mono
    matrix would make it 3 dB louder and move the loudness gate and the scores).
    """
    import av

    name = mask_url(url)
    mix = Mixdown(name, _audio.AudioLimits(max_duration_s=None, max_bytes=None))
    out = _live_output(rate, name)
    st = container.streams.audio[0]
    last_audio, bad = time.monotonic(), 0
    for packet in container.demux(st):
        if stop.is_set():
            return
        try:
            frames = packet.decode()
            bad = 0
        except av.error.FFmpegError:
            bad += 1  # a corrupt packet in a live stream: skip it, give up on a run of them
            if bad > 32:
                raise SourceLost(f"{name}: too many undecodable packets") from None
            continue
        for frame in frames:
            if not frame.samples:
                continue
            last_audio = time.monotonic()
            for in_rate, mono in mix.push(frame):
                yield from out.push(mono, in_rate)
        if time.monotonic() - last_audio > watchdog_s:
            raise SourceLost(f"no audio for {watchdog_s:g} s")
    for in_rate, mono in mix.push(None):
        yield from out.push(mono, in_rate)
    yield from out.finish()


def _pcm_to_float(raw: bytes, dtype: np.dtype[Any], channels: int) -> np.ndarray:
    """Interleaved raw PCM -> float32 mono, by the rule files and streams use (:mod:`earmark.audio.pcm`)."""
    return downmix(to_float32(np.frombuffer(raw, dtype=dtype).reshape(-1, channels)))


def _live_output(rate: int, name: str) -> Output:
    """The output stage of every live source: FFmpeg's resampler and chunks, as for files (no length limit)."""
    limits = _audio.AudioLimits(max_duration_s=None, max_bytes=None)
    return Output(sample_rate=rate, chunk=int(CHUNK_S * rate), limits=limits, name=name)


def _read_pcm(stream: BinaryIO, spec: SourceSpec, rate: int, stop: threading.Event) -> Reader:
    dtype = PCM_FORMATS[spec.sample_format]
    frame_bytes = dtype.itemsize * spec.channels
    want = frame_bytes * max(1, int(spec.input_rate_hz * 0.1))
    out = _live_output(rate, spec.name)
    fd = _fileno(stream)
    leftover, waited = b"", 0.0
    while not stop.is_set():
        if fd is not None and not select.select([fd], [], [], 0.25)[0]:
            waited += 0.25
            if waited >= spec.reconnect.watchdog_s:
                raise SourceLost(f"no audio on stdin for {spec.reconnect.watchdog_s:g} s")
            continue
        raw = os.read(fd, want) if fd is not None else stream.read(want)
        if not raw:
            yield from out.finish()  # end of input: what the resampler holds, and the last short chunk
            return
        waited = 0.0
        raw = leftover + raw
        usable = len(raw) - len(raw) % frame_bytes
        leftover = raw[usable:]
        if usable:
            yield from out.push(_pcm_to_float(raw[:usable], dtype, spec.channels), spec.input_rate_hz)


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _read_microphone(spec: SourceSpec, rate: int, stop: threading.Event) -> Reader:
    import queue

    try:
        import sounddevice as sd
    except ImportError:
        raise MissingExtraError("microphone input", "monitor") from None
    except OSError as ex:  # the PortAudio library itself is missing
        raise ConfigError(
            f"microphone input needs PortAudio ({ex}); e.g. apt install libportaudio2"
        ) from None
    q: queue.Queue[np.ndarray] = queue.Queue(maxsize=256)

    def callback(indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        try:
            q.put_nowait(downmix(indata).copy())  # the buffer is reused by PortAudio
        except queue.Full:
            pass  # the model thread is far behind; live audio is dropped, never queued forever

    out = _live_output(rate, spec.name)
    device = spec.target or None
    try:
        with sd.InputStream(
            samplerate=spec.input_rate_hz,
            channels=spec.channels,
            dtype="float32",
            device=device,
            callback=callback,
        ):
            while not stop.is_set():
                try:
                    x = q.get(timeout=spec.reconnect.watchdog_s)
                except queue.Empty:
                    raise SourceLost(
                        f"no audio from the microphone for {spec.reconnect.watchdog_s:g} s"
                    ) from None
                yield from out.push(x, spec.input_rate_hz)
    except sd.PortAudioError as ex:
        raise SourceLost(f"microphone: {ex}") from None


class SourceWorker(threading.Thread):
    """Reads one source in its own thread, reconnecting with backoff; hands chunks to callbacks.

    Args:
        spec: the source.
        rate: the model's sample rate.
        on_chunk: called with each chunk (may block to apply backpressure).
        on_lost: called when the source drops, with the reason.
        on_back: called when audio flows again, with the seconds it was away.
        stop: set to end the worker.
        on_end: called once when the worker ends (source finished, failed for good, or stopped).
        stdin: the stream a ``stdin`` source reads (default ``sys.stdin.buffer``).
    """

    def __init__(
        self,
        spec: SourceSpec,
        rate: int,
        *,
        on_chunk: Callable[[np.ndarray], None],
        on_lost: Callable[[str], None],
        on_back: Callable[[float], None],
        stop: threading.Event,
        on_end: Callable[[], None] | None = None,
        stdin: BinaryIO | None = None,
    ) -> None:
        super().__init__(name=f"earmark-source-{spec.name}", daemon=True)
        self.spec, self.rate, self.stop = spec, rate, stop
        self._on_chunk, self._on_lost, self._on_back = on_chunk, on_lost, on_back
        self._stdin, self._on_end = stdin, on_end
        self._rng = random.Random()  # jitter only spreads reconnects; it never touches results
        self.finished = threading.Event()
        self.error: str | None = None
        self.reconnects = 0

    def run(self) -> None:
        try:
            self._loop()
        except Exception as ex:  # never let one source take the monitor down
            self.error = str(ex)
            log.exception("source %s: stopped by an unexpected error", self.spec.name)
        finally:
            self.finished.set()
            if self._on_end is not None:
                self._on_end()

    def _loop(self) -> None:
        spec, attempt, lost_at = self.spec, 0, None
        while not self.stop.is_set():
            connected, got_audio = time.monotonic(), False
            try:
                for chunk in open_reader(spec, self.rate, self.stop, stdin=self._stdin):
                    if not got_audio:
                        got_audio = True
                        if lost_at is not None:
                            self._on_back(time.monotonic() - lost_at)
                            lost_at = None
                    if attempt and time.monotonic() - connected >= spec.reconnect.healthy_s:
                        attempt = 0  # healthy again: the next drop starts the backoff over
                    self._on_chunk(chunk)
                if spec.finite or self.stop.is_set():
                    return
                if spec.kind == "file":  # a looped file starts over at once
                    continue
                reason = "the stream ended"
            except SourceLost as ex:
                reason = str(ex)
            except AudioError as ex:
                if spec.kind == "file":
                    self.error = str(ex)
                    log.error("source %s: %s", spec.name, ex)
                    return
                reason = _scrub(str(ex), spec.target) if spec.kind == "url" else str(ex)
            first = lost_at is None
            if first:
                lost_at = time.monotonic()
                self._on_lost(reason)
            delay = spec.reconnect.delay_s(attempt, self._rng)
            # the first failure of an outage is a warning; the retries that follow are routine
            level = logging.WARNING if first else logging.INFO
            attempt += 1
            self.reconnects += 1
            log.log(level, "source %s: %s; reconnecting in %.1f s", spec.name, reason, delay)
            if self.stop.wait(delay):
                return
