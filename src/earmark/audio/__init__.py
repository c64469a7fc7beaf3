"""Audio in: one entry point from files, bytes, file objects, arrays and streams.

Why PyAV: it bundles FFmpeg, so every container and codec FFmpeg knows (wav in
any PCM depth or ADPCM, mp3, ogg/vorbis, opus, flac, m4a/aac, aiff, webm...)
decodes without a system ffmpeg, resampling uses FFmpeg's own resampler
(libswresample), and ``av.open(url)`` also reads live streams (RTSP, HTTP, HLS)
for monitoring.

Everything comes out as float32 mono at the rate the model asks for:

- **Downmix**: the plain average of all channels (LFE included), as for
  arrays. A stereo file with the same signal in both channels therefore has
  exactly the level of the mono file. (FFmpeg's own ``-ac 1`` matrix would make
  it 3 dB louder, and 5.1 louder still.)
- **Resampling**: libswresample's default filter, applied after the downmix.

Decoding is a generator of chunks (:func:`stream`), so long files and live
streams never have to fit in memory; :func:`decode` collects it for callers that
want one array. Limits are explicit (:class:`AudioLimits`) and are checked on
what is really there (file size on disk, decoded samples), never on what a
header claims. Breaking one, an empty or unreadable file, or audio that decodes
to nothing raises :class:`~earmark.errors.AudioError` naming the source and the
reason. A file that breaks off midway (or whose header promises more than it
holds) yields what it has and warns with :class:`AudioWarning`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ..errors import AudioError
from .pcm import Mixdown, Output, check_format, push_block, stream_array
from .sources import Target, ffmpeg_reason, opened, wav_promised_s

if TYPE_CHECKING:
    from ..stage.windows import iter_windows, window_spans

__all__ = [
    "AudioInfo",
    "AudioLimits",
    "AudioWarning",
    "Source",
    "decode",
    "describe",
    "iter_windows",
    "source_name",
    "stream",
    "window_spans",
]

log = logging.getLogger("earmark")

_STAGE_NAMES = ("iter_windows", "window_spans")


def __getattr__(name: str) -> Any:
    """``window_spans``/``iter_windows``: the stage's one window cutter, under the name it had here.

    Not a second cutter: the same functions as :mod:`earmark.stage.windows`, found lazily
    (the stage imports this module, so it cannot be imported at the top).
    """
    if name in _STAGE_NAMES:
        from ..stage import windows

        return getattr(windows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO | np.ndarray


class AudioWarning(UserWarning):
    """Audio was usable but not whole (truncated or partly corrupt)."""


@dataclass(frozen=True, kw_only=True)
class AudioLimits:
    """What a source may be before it is refused.

    Attributes:
        max_duration_s: longest decoded audio accepted; ``None`` for no limit
            (live streams). Counted on decoded samples, not on what a header claims.
        max_bytes: largest file, buffer or file object accepted; ``None`` for no limit.
            Counted on the bytes really there (or read), not on a header.
        min_rate_hz: lowest input sample rate.
        max_rate_hz: highest input sample rate.
        max_channels: most input channels (averaged to mono).
        max_bad_packets: corrupt packets skipped (with a warning) before giving up.
    """

    max_duration_s: float | None = 4 * 3600.0
    max_bytes: int | None = 4 * 1024**3
    min_rate_hz: int = 8_000
    max_rate_hz: int = 192_000
    max_channels: int = 8
    max_bad_packets: int = 32

    def __post_init__(self) -> None:
        if self.max_duration_s is not None and self.max_duration_s <= 0:
            raise ValueError("max_duration_s must be positive or None")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive or None")
        if not 0 < self.min_rate_hz <= self.max_rate_hz:
            raise ValueError("need 0 < min_rate_hz <= max_rate_hz")
        if self.max_channels < 1 or self.max_bad_packets < 0:
            raise ValueError("max_channels must be >= 1 and max_bad_packets >= 0")


DEFAULT_LIMITS = AudioLimits()
# decoded audio is converted and resampled in blocks of about this many seconds of input
DECODE_BLOCK_S = 0.5


def source_name(source: object, name: str | None = None) -> str:
    """A short human name for a source, for messages."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape}>"
    return str(getattr(source, "name", "<stream>"))


def _audio_stream(container: Any, name: str) -> Any:
    streams = container.streams.audio
    if not streams:
        raise AudioError(name, "has no audio stream (not an audio file)")
    return streams[0]


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

    Memory stays bounded by about one chunk whatever the length of the source.

    Args:
        source: a path, URL, bytes, binary file object, or a numpy array
            (``(samples,)`` or 2-D with channels on the shorter axis) with ``input_rate``.
        sample_rate: the rate to resample to (the model's).
        input_rate: the rate of an array source; required for arrays, refused otherwise.
        limits: see :class:`AudioLimits`.
        name: how to name the source in messages.
        chunk_s: length of each chunk (all chunks but the last hold exactly this much).
        timeout_s: network open/read timeout for URLs.

    Yields:
        1-D float32 arrays; together they are the whole audio.

    Raises:
        AudioError: the source is missing, empty, not audio, breaks a limit, or
            decodes to nothing. A limit crossed midway raises after the chunks
            before it. A source that breaks off midway yields what it could and
            warns (:class:`AudioWarning`).
    """
    name = source_name(source, name)
    chunk = max(1, round(chunk_s * sample_rate))
    if isinstance(source, np.ndarray):
        yield from stream_array(source, input_rate, sample_rate, limits, name, chunk)
        return
    if input_rate is not None:
        raise AudioError(name, "input_rate is only for arrays; files carry their own rate")
    with opened(source, name, limits, timeout_s) as (container, target):
        yield from _stream_container(container, sample_rate, limits, name, chunk, target)


class _Broken(Exception):
    """The data stops making sense midway (demuxer or decoder error)."""


@dataclass
class _Tally:
    bad: int = 0


def _frames(container: Any, st: Any, limits: AudioLimits, tally: _Tally) -> Iterator[Any]:
    """Decoded frames of one stream; skips up to ``max_bad_packets`` undecodable packets."""
    import av

    packets = container.demux(st)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as ex:  # the demuxer cannot go on
            raise _Broken(ffmpeg_reason(ex)) from None
        try:
            frames = packet.decode()
        except av.error.FFmpegError as ex:
            tally.bad += 1
            if tally.bad > limits.max_bad_packets:
                raise _Broken(f"{tally.bad} corrupt packets, {ffmpeg_reason(ex)}") from None
            continue
        yield from frames


def _codec_context(st: Any, name: str) -> Any:
    """The stream's decoder, or an AudioError naming the codec this FFmpeg lacks."""
    ctx = st.codec_context
    if ctx is None:
        codec = getattr(getattr(st, "codec", None), "name", None) or "unknown"
        raise AudioError(name, f"has an audio stream this FFmpeg cannot decode (codec: {codec})")
    return ctx


def _stream_container(
    container: Any, sample_rate: int, limits: AudioLimits, name: str, chunk: int, target: Target
) -> Iterator[np.ndarray]:
    st = _audio_stream(container, name)
    ctx = _codec_context(st, name)
    check_format(ctx.sample_rate, ctx.channels, name, limits)
    out = Output(sample_rate=sample_rate, chunk=chunk, limits=limits, name=name)
    tally = _Tally()
    problem = None
    mix = Mixdown(name, limits)
    # frames are converted, joined and resampled per block of about DECODE_BLOCK_S, not one by
    # one (an mp3 frame is 24 ms: ~420 resampler calls per 10 s otherwise)
    block: list[Any] = []
    block_n, block_max = 0, max(1, int(DECODE_BLOCK_S * (ctx.sample_rate or sample_rate)))
    try:
        for frame in _frames(container, st, limits, tally):
            if frame.samples:
                block.append(frame)
                block_n += frame.samples
                if block_n >= block_max:
                    for rate, mono in push_block(mix, block):
                        yield from out.push(mono, rate)
                    block, block_n = [], 0
    except _Broken as ex:
        broken: _Broken | None = ex
    else:
        broken = None
    for rate, mono in push_block(mix, block):
        yield from out.push(mono, rate)
    if broken is not None:
        if out.total == 0:
            raise AudioError(name, f"no audio could be decoded from it ({broken})") from None
        problem = f"breaks off after {out.seconds:.1f} s ({broken})"
    for rate, mono in mix.push(None):
        yield from out.push(mono, rate)
    yield from out.finish()
    if out.total == 0:
        raise AudioError(name, "decodes to no audio samples (empty, truncated or not audio)")
    problem = problem or target.truncation() or _shortfall(st, out.seconds, wav_promised_s(target.head))
    if problem or tally.bad:
        skipped = f"{tally.bad} corrupt packet(s) skipped" if tally.bad else ""
        parts = "; ".join(p for p in (problem, skipped) if p)
        warnings.warn(f"{name}: {parts}; kept {out.seconds:.1f} s", AudioWarning, stacklevel=2)


def _shortfall(st: Any, got_s: float, promised_s: float | None) -> str | None:
    """A message when the header promises clearly more audio than was decoded."""
    if promised_s is not None:
        declared = promised_s  # a WAV's own data size (FFmpeg trims it to the file)
    elif st.duration is not None and st.time_base is not None:
        declared = float(st.duration * st.time_base)
    else:
        return None  # no length in the header, only a bitrate estimate
    if got_s < declared - max(0.25, 0.02 * declared):
        return f"the file ends after {got_s:.1f} s but its header says {declared:.1f} s (truncated?)"
    return None


def decode(
    source: Source,
    *,
    sample_rate: int,
    input_rate: int | None = None,
    limits: AudioLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> np.ndarray:
    """Decode a whole source into one float32 mono array at ``sample_rate``.

    Args:
        source: as for :func:`stream`.
        sample_rate: the rate to resample to.
        input_rate: the rate of an array source (required for arrays).
        limits: see :class:`AudioLimits`.
        name: how to name the source in messages.

    Returns:
        1-D float32 samples. Use :func:`stream` for long audio.

    Raises:
        AudioError: as :func:`stream`.
    """
    chunks = list(stream(source, sample_rate=sample_rate, input_rate=input_rate, limits=limits, name=name))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


@dataclass(frozen=True, kw_only=True)
class AudioInfo:
    """What a file says about itself: header values, so ``duration_s`` may be an estimate or wrong."""

    format: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None


def describe(source: Source, *, name: str | None = None, limits: AudioLimits = DEFAULT_LIMITS) -> AudioInfo:
    """Read the header of an audio source without decoding it.

    Args:
        source: a path, URL, bytes or binary file object.
        name: how to name the source in messages.
        limits: only the size limit applies here.

    Returns:
        The header's format, codec, rate, channel count and duration.

    Raises:
        AudioError: the source is missing, empty or not audio.
    """
    name = source_name(source, name)
    with opened(source, name, limits, None) as (container, _):
        st = _audio_stream(container, name)
        ctx = _codec_context(st, name)  # describe() and decoding refuse the same files
        duration = None
        if st.duration is not None and st.time_base is not None:
            duration = float(st.duration * st.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return AudioInfo(
            format=container.format.name,
            codec=ctx.name,
            sample_rate=int(ctx.sample_rate or 0),
            channels=int(ctx.channels or 0),
            duration_s=duration,
        )
