"""Audio in: one entry point from files, bytes, file objects, arrays and streams.

Why PyAV: it bundles FFmpeg, so every container and codec FFmpeg knows (wav,
mp3, ogg/vorbis, opus, flac, m4a/aac, aiff, webm...) decodes without a system
ffmpeg, resampling uses FFmpeg's own resampler, and ``av.open(url)`` also reads
live streams (RTSP, HTTP, HLS) for monitoring.

Everything is float32 mono at the rate the model asks for. Decoding is a
generator of chunks (:func:`stream`), so long files and live streams never have
to fit in memory; :func:`decode` collects it for callers that want one array.
Limits are explicit (:class:`AudioLimits`); breaking one raises
:class:`~earmark.errors.AudioError` naming the source and the reason.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from .errors import AudioError

__all__ = [
    "AudioLimits",
    "AudioWarning",
    "Source",
    "decode",
    "describe",
    "iter_windows",
    "stream",
    "window_spans",
]

log = logging.getLogger("earmark")

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray]


class AudioWarning(UserWarning):
    """Audio was usable but not whole (truncated or partly corrupt)."""


@dataclass(frozen=True, kw_only=True)
class AudioLimits:
    """What a source may be before it is refused.

    Attributes:
        max_duration_s: longest audio :func:`decode` accepts; ``None`` for no limit
            (live streams). Checked on decoded samples, not on what a header claims.
        max_bytes: largest file or buffer accepted; ``None`` for no limit.
        min_rate_hz: lowest input sample rate.
        max_rate_hz: highest input sample rate.
        max_channels: most input channels (downmixed to mono).
        max_bad_packets: corrupt packets skipped before the rest is given up.
    """

    max_duration_s: float | None = 4 * 3600.0
    max_bytes: int | None = 4 * 1024**3
    min_rate_hz: int = 8_000
    max_rate_hz: int = 192_000
    max_channels: int = 8
    max_bad_packets: int = 32


DEFAULT_LIMITS = AudioLimits()


def source_name(source: object, name: str | None = None) -> str:
    """A short human name for a source, for messages."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape}>"
    return str(getattr(source, "name", "<stream>"))


def _is_url(s: str) -> bool:
    return "://" in s.split("?")[0][:16]


def _open(source: Source, name: str, limits: AudioLimits, timeout_s: float | None) -> object:
    import av

    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(name, "the file is empty (0 bytes)")
        _check_size(len(source), name, limits)
        target: object = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not _is_url(path):
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                raise AudioError(name, "no such file") from None
            except OSError as ex:
                raise AudioError(name, f"cannot read it ({ex.strerror})") from None
            if Path(path).is_dir():
                raise AudioError(name, "is a folder, not an audio file")
            if size == 0:
                raise AudioError(name, "the file is empty (0 bytes)")
            _check_size(size, name, limits)
        target = path
    else:  # a binary file object
        target = source
    try:
        return av.open(target, mode="r", timeout=timeout_s)
    except av.error.FFmpegError as ex:
        raise AudioError(name, f"not a readable audio file ({_ffmpeg_reason(ex)})") from None
    except (OSError, ValueError) as ex:
        raise AudioError(name, f"cannot open it ({ex})") from None


def _check_size(size: int, name: str, limits: AudioLimits) -> None:
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise AudioError(name, f"is {size / 1e6:.1f} MB, over the {limits.max_bytes / 1e6:.1f} MB limit")


def _ffmpeg_reason(ex: Exception) -> str:
    text = getattr(ex, "strerror", None) or str(ex)
    return str(text).rstrip(".").lower()


def stream(
    source: Source,
    *,
    sample_rate: int,
    input_rate: int | None = None,
    limits: AudioLimits = DEFAULT_LIMITS,
    name: str | None = None,
    chunk_s: float = 1.0,
    timeout_s: float | None = None,
) -> Iterator[np.ndarray]:
    """Decode a source as a generator of float32 mono chunks at ``sample_rate``.

    Args:
        source: a path, URL, bytes, binary file object, or a numpy array
            (``(samples,)`` or ``(samples, channels)``) with ``input_rate``.
        sample_rate: the rate to resample to (the model's).
        input_rate: the rate of an array source; required for arrays.
        limits: see :class:`AudioLimits`.
        name: how to name the source in messages.
        chunk_s: about how much audio each chunk holds.
        timeout_s: network open/read timeout for URLs.

    Yields:
        1-D float32 arrays; together they are the whole audio.

    Raises:
        AudioError: the source is missing, empty, not audio, breaks a limit, or
            decodes to nothing. A source that breaks off midway yields what it
            could and warns (:class:`AudioWarning`).
    """
    name = source_name(source, name)
    if isinstance(source, np.ndarray):
        yield from _stream_array(source, input_rate, sample_rate, limits, name)
        return
    if input_rate is not None:
        raise AudioError(name, "input_rate is only for arrays; files carry their own rate")
    container = _open(source, name, limits, timeout_s)
    try:
        yield from _stream_container(container, sample_rate, limits, name, chunk_s)
    finally:
        container.close()  # type: ignore[attr-defined]


def _stream_container(
    container: object, sample_rate: int, limits: AudioLimits, name: str, chunk_s: float
) -> Iterator[np.ndarray]:
    import av

    streams = container.streams.audio  # type: ignore[attr-defined]
    if not streams:
        raise AudioError(name, "has no audio stream (not an audio file)")
    st = streams[0]
    ctx = st.codec_context
    _check_format(ctx.sample_rate, ctx.channels, name, limits)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    max_samples = None if limits.max_duration_s is None else int(limits.max_duration_s * sample_rate)
    chunk_samples = max(1, int(chunk_s * sample_rate))
    pending: list[np.ndarray] = []
    pending_n = total = bad = 0

    def frames() -> Iterator[object]:
        nonlocal bad
        packets = container.demux(st)  # type: ignore[attr-defined]
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.EOFError:
                break
            except av.error.FFmpegError as ex:
                bad += 1
                if bad > limits.max_bad_packets or total == 0 and bad > 4:
                    raise _broken(name, total, sample_rate, ex) from None
                continue
            try:
                yield from packet.decode()
            except av.error.FFmpegError as ex:
                bad += 1
                if bad > limits.max_bad_packets:
                    raise _broken(name, total, sample_rate, ex) from None
        yield None  # flush the resampler

    try:
        for frame in frames():
            if frame is not None:
                _check_format(frame.sample_rate, len(frame.layout.channels), name, limits)  # type: ignore[attr-defined]
            for out in resampler.resample(frame):  # type: ignore[arg-type]
                data = out.to_ndarray().reshape(-1)
                total += data.size
                if max_samples is not None and total > max_samples:
                    raise AudioError(
                        name, f"is longer than the {limits.max_duration_s:.0f} s limit for one file"
                    )
                pending.append(data)
                pending_n += data.size
                if pending_n >= chunk_samples:
                    yield np.concatenate(pending)
                    pending, pending_n = [], 0
    except AudioError as ex:
        if total == 0 or "limit" in ex.reason:
            raise
        warnings.warn(f"{name}: {ex.reason}; kept the first {total / sample_rate:.1f} s", AudioWarning, stacklevel=3)
    if pending:
        yield np.concatenate(pending)
    if total == 0:
        raise AudioError(name, "decodes to no audio samples (empty, truncated or not audio)")
    if bad:
        warnings.warn(
            f"{name}: {bad} corrupt or truncated packet(s) skipped; decoded {total / sample_rate:.1f} s",
            AudioWarning,
            stacklevel=3,
        )


def _broken(name: str, total: int, sample_rate: int, ex: Exception) -> AudioError:
    if total == 0:
        return AudioError(name, f"not decodable as audio ({_ffmpeg_reason(ex)})")
    return AudioError(name, f"breaks off after {total / sample_rate:.1f} s ({_ffmpeg_reason(ex)})")


def _check_format(rate: int | None, channels: int | None, name: str, limits: AudioLimits) -> None:
    if not rate:
        raise AudioError(name, "has no sample rate (not an audio file)")
    if not limits.min_rate_hz <= rate <= limits.max_rate_hz:
        raise AudioError(
            name,
            f"sample rate {rate} Hz is outside the supported {limits.min_rate_hz}-{limits.max_rate_hz} Hz",
        )
    if channels is not None and channels > limits.max_channels:
        raise AudioError(name, f"has {channels} channels; at most {limits.max_channels} are supported")


def _stream_array(
    array: np.ndarray, input_rate: int | None, sample_rate: int, limits: AudioLimits, name: str
) -> Iterator[np.ndarray]:
    import av

    if input_rate is None:
        raise AudioError(name, "an array needs its sample rate (input_rate=...); it is not guessed")
    x = _as_float_2d(array, name)
    _check_format(int(input_rate), x.shape[1], name, limits)
    if x.shape[0] == 0:
        raise AudioError(name, "has no samples")
    if limits.max_duration_s is not None and x.shape[0] / input_rate > limits.max_duration_s:
        raise AudioError(name, f"is longer than the {limits.max_duration_s:.0f} s limit for one file")
    mono = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    if int(input_rate) == sample_rate:
        yield np.ascontiguousarray(mono, dtype=np.float32)
        return
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    step = int(input_rate) * 10  # resample in 10 s pieces to bound memory
    for i in range(0, mono.size, step):
        frame = av.AudioFrame.from_ndarray(mono[None, i : i + step].copy(), format="flt", layout="mono")
        frame.sample_rate = int(input_rate)
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1)


def _as_float_2d(array: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(array)
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim == 2:
        # (samples, channels) is the convention; accept (channels, samples) when unambiguous
        if x.shape[1] > 8 >= x.shape[0]:
            x = x.T
    else:
        raise AudioError(name, f"an audio array must be 1-D or 2-D, not {x.ndim}-D")
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        x = (x.astype(np.float32) - (info.max + info.min + 1) / 2) / ((info.max - info.min + 1) / 2)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
    else:
        raise AudioError(name, f"an audio array must hold numbers, not {x.dtype}")
    if not np.isfinite(x).all():
        raise AudioError(name, "contains NaN or infinite samples")
    return x


def decode(
    source: Source,
    *,
    sample_rate: int,
    input_rate: int | None = None,
    limits: AudioLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> np.ndarray:
    """Decode a whole source into one float32 mono array at ``sample_rate``.

    Same arguments and errors as :func:`stream`; use that for long audio.
    """
    chunks = list(stream(source, sample_rate=sample_rate, input_rate=input_rate, limits=limits, name=name))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


@dataclass(frozen=True, kw_only=True)
class AudioInfo:
    """What a file says about itself (header values; may be estimates)."""

    format: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None


def describe(source: Source, *, name: str | None = None, limits: AudioLimits = DEFAULT_LIMITS) -> AudioInfo:
    """Read the header of an audio source without decoding it."""
    name = source_name(source, name)
    container = _open(source, name, limits, None)
    try:
        streams = container.streams.audio  # type: ignore[attr-defined]
        if not streams:
            raise AudioError(name, "has no audio stream (not an audio file)")
        st = streams[0]
        ctx = st.codec_context
        duration = None
        if st.duration is not None and st.time_base is not None:
            duration = float(st.duration * st.time_base)
        elif container.duration is not None:  # type: ignore[attr-defined]
            duration = container.duration / 1_000_000  # type: ignore[attr-defined]
        return AudioInfo(
            format=container.format.name,  # type: ignore[attr-defined]
            codec=ctx.name,
            sample_rate=int(ctx.sample_rate or 0),
            channels=int(ctx.channels or 0),
            duration_s=duration,
        )
    finally:
        container.close()  # type: ignore[attr-defined]


def window_spans(n_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Start/end sample of each analysis window over ``n_samples``.

    Audio no longer than one window is one window (the model repeat-pads it).
    Longer audio gets windows every ``hop`` samples, plus one aligned to the
    end so the tail is always covered.
    """
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if n_samples <= window:
        return [(0, n_samples)]
    spans = [(s, s + window) for s in range(0, n_samples - window + 1, hop)]
    if spans[-1][1] < n_samples:
        spans.append((n_samples - window, n_samples))
    return spans


def iter_windows(
    chunks: Iterator[np.ndarray], *, window: int, hop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a chunk stream into the windows of :func:`window_spans`, holding at most ~one window.

    Yields ``(start_sample, samples)``; the same windows as ``window_spans`` on the
    concatenated audio, without ever concatenating it.
    """
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute index of buf[0]
    next_start = 0
    last_end = 0
    for chunk in chunks:
        buf = np.concatenate([buf, chunk.astype(np.float32, copy=False)])
        while next_start + window <= buf_start + buf.size:
            i = next_start - buf_start
            yield next_start, buf[i : i + window].copy()
            last_end = next_start + window
            next_start += hop
        # keep the last `window` samples: the end-aligned final window may need them
        keep_from = max(0, min(next_start - buf_start, buf.size - window))
        buf, buf_start = buf[keep_from:], buf_start + keep_from
    total = buf_start + buf.size
    if total == 0:
        return
    if total <= window and last_end == 0:
        yield 0, buf.copy()
    elif last_end < total:
        yield total - window, buf[-window:].copy()
