"""Samples to float32 mono at a target rate: decoded frames and arrays alike.

Private helpers of :mod:`earmark.audio`. The downmix is done here in numpy (the
mean of all channels) so its level is the same for every layout, and only the
mono signal goes through FFmpeg's resampler (one channel of work, not eight).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AudioError

if TYPE_CHECKING:
    from . import AudioLimits


def check_format(rate: int | None, channels: int | None, name: str, limits: AudioLimits) -> None:
    """Raise :class:`AudioError` when a rate or channel count is outside ``limits``."""
    if not rate:
        raise AudioError(name, "has no sample rate (not an audio file)")
    if not limits.min_rate_hz <= rate <= limits.max_rate_hz:
        raise AudioError(
            name,
            f"sample rate {rate} Hz is outside the supported {limits.min_rate_hz}-{limits.max_rate_hz} Hz",
        )
    if channels and channels > limits.max_channels:
        raise AudioError(name, f"has {channels} channels; at most {limits.max_channels} are supported")


MAX_SAMPLE = 1e4
"""Largest sample magnitude accepted from a float file; full scale is 1.0, so more is garbage that would
overflow the model's spectrogram into NaN."""


def check_finite(samples: np.ndarray, name: str) -> None:
    """Raise :class:`AudioError` on NaN, infinite or absurdly large samples (two cheap passes: min, max)."""
    if samples.size == 0:
        return
    lo, hi = samples.min(), samples.max()  # NaN propagates through both
    if -MAX_SAMPLE <= lo and hi <= MAX_SAMPLE:
        return
    if np.isfinite(lo) and np.isfinite(hi):
        raise AudioError(
            name, f"has samples far outside the audio range (up to {max(-lo, hi):.3g}; full scale is 1)"
        )
    raise AudioError(name, "contains NaN or infinite samples (a broken float file)")


class Mixdown:
    """Decoded PyAV frames of any sample format and layout -> float32 mono (mean of channels).

    Frames are first converted to packed float by FFmpeg (same layout and rate),
    which also avoids PyAV's per-plane access: with 8 or more planar channels
    PyAV 18 walks past the end of the plane pointers and crashes.
    """

    def __init__(self, name: str, limits: AudioLimits) -> None:
        self.name, self.limits = name, limits
        self._key: tuple[str, str, int] | None = None
        self._conv: Any = None
        self._channels = 1

    def push(self, frame: Any) -> Iterator[tuple[int, np.ndarray]]:
        """Yields ``(sample_rate, mono)`` pieces for one frame (``None`` flushes)."""
        import av

        if frame is not None:
            key = (frame.format.name, frame.layout.name, int(frame.sample_rate))
            if key != self._key:
                check_format(frame.sample_rate, frame.layout.nb_channels, self.name, self.limits)
                yield from self.push(None)  # what the old converter still holds
                self._key, self._channels = key, frame.layout.nb_channels
                self._conv = av.AudioResampler(format="flt")  # keeps layout and rate
        elif self._conv is None:
            return
        for out in self._conv.resample(frame):
            x = out.to_ndarray().reshape(-1, self._channels)
            mono = x.mean(axis=1, dtype=np.float32) if self._channels > 1 else x[:, 0]
            check_finite(mono, self.name)
            yield int(out.sample_rate), mono


# sample formats whose frames convert to float in numpy exactly as FFmpeg's converter does
# (a copy, or a power-of-two scale), read straight from the frame for up to 2 channels
_DIRECT = {"flt": 1.0, "fltp": 1.0, "dbl": 1.0, "dblp": 1.0, "s16": 2.0**-15, "s16p": 2.0**-15}
_DIRECT.update({"s32": 2.0**-31, "s32p": 2.0**-31})


def _direct_mono(frame: Any, channels: int) -> np.ndarray:
    """Float32 mono of one frame in a :data:`_DIRECT` format (same values as the converter)."""
    fmt = frame.format
    x = frame.to_ndarray()
    if not fmt.is_planar:
        x = x.reshape(-1, channels).T
    scale = _DIRECT[fmt.name]
    y = x.astype(np.float32) if x.dtype != np.float32 else x
    if scale != 1.0:
        y = y * np.float32(scale)
    if channels == 1:
        return np.ascontiguousarray(y[0])
    mono: np.ndarray = (y[0] + y[1]) * np.float32(0.5)
    return mono


def push_block(mix: Mixdown, frames: list[Any]) -> Iterator[tuple[int, np.ndarray]]:
    """:meth:`Mixdown.push` for a block of frames: one ``(rate, mono)`` piece per run of one format.

    Mono and stereo frames in common sample formats are read straight into numpy
    (no converter call per frame); others go through :meth:`Mixdown.push`. Pieces
    are joined per block, so the resampler runs once per block, not once per frame.
    """
    pending: list[np.ndarray] = []
    rate = 0
    for frame in frames:
        key = (frame.format.name, frame.layout.name, int(frame.sample_rate))
        channels = frame.layout.nb_channels
        if key[0] in _DIRECT and channels <= 2:
            if key != mix._key:
                check_format(frame.sample_rate, channels, mix.name, mix.limits)
                if pending:
                    yield rate, _checked(pending, mix.name)
                    pending = []
                yield from mix.push(None)  # what an old converter still holds
                mix._key, mix._channels, mix._conv = key, channels, None
            rate = key[2]
            pending.append(_direct_mono(frame, channels))
            continue
        for r, mono in mix.push(frame):
            if pending and r != rate:
                yield rate, _checked(pending, mix.name)
                pending = []
            rate = r
            pending.append(mono)
    if pending:
        yield rate, _checked(pending, mix.name)


def _checked(parts: list[np.ndarray], name: str) -> np.ndarray:
    """The block joined; refused when a sample is NaN, infinite or absurd (the direct path skips the converter)."""
    block = parts[0] if len(parts) == 1 else np.concatenate(parts)
    check_finite(block, name)
    return block


class Output:
    """Mono float32 in at any rate, fixed-size chunks out at ``sample_rate``.

    Resamples with FFmpeg (a new resampler when the input rate changes
    midway, as chained streams can), cuts exact ``chunk``-sample pieces, and
    enforces ``limits.max_duration_s`` on what comes out.
    """

    def __init__(self, *, sample_rate: int, chunk: int, limits: AudioLimits, name: str) -> None:
        self.rate, self.chunk, self.name = sample_rate, chunk, name
        self.limit_s = limits.max_duration_s
        self.max_samples = None if self.limit_s is None else int(self.limit_s * sample_rate)
        self.total = 0
        self._in_rate = 0
        self._resampler: Any = None
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    @property
    def seconds(self) -> float:
        """Audio produced so far, in seconds."""
        return self.total / self.rate

    def push(self, mono: np.ndarray, in_rate: int) -> Iterator[np.ndarray]:
        """Add mono samples at ``in_rate``; yields every chunk that is now complete."""
        import av

        if in_rate != self._in_rate:
            yield from self._drain()
            self._in_rate = in_rate
            self._resampler = None if in_rate == self.rate else av.AudioResampler("flt", "mono", self.rate)
        if self._resampler is None:
            yield from self._add(mono)
            return
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = in_rate
        for out in self._resampler.resample(frame):
            yield from self._add(out.to_ndarray().reshape(-1))

    def finish(self) -> Iterator[np.ndarray]:
        """Flush the resampler and yield the last, shorter chunk."""
        yield from self._drain()
        if self._pending_n:
            yield np.concatenate(self._pending)
            self._pending, self._pending_n = [], 0

    def _drain(self) -> Iterator[np.ndarray]:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                yield from self._add(out.to_ndarray().reshape(-1))
            self._resampler = None

    def _add(self, data: np.ndarray) -> Iterator[np.ndarray]:
        self.total += data.size
        if self.max_samples is not None and self.total > self.max_samples:
            raise AudioError(self.name, f"is longer than the {self.limit_s:g} s limit")
        self._pending.append(data)
        self._pending_n += data.size
        if self._pending_n < self.chunk:
            return
        joined = np.concatenate(self._pending)
        full = joined.size - joined.size % self.chunk
        for i in range(0, full, self.chunk):
            yield joined[i : i + self.chunk]
        rest = joined[full:].copy()  # a copy, so the yielded chunks do not pin `joined`
        self._pending, self._pending_n = ([rest] if rest.size else []), rest.size


def stream_array(
    array: np.ndarray, input_rate: int | None, sample_rate: int, limits: AudioLimits, name: str, chunk: int
) -> Iterator[np.ndarray]:
    """The array path of :func:`earmark.audio.stream`: same downmix, resampler and chunks."""
    if input_rate is None:
        raise AudioError(name, "an array needs its sample rate (input_rate=...); it is not guessed")
    x = as_float_2d(array, name)
    check_format(int(input_rate), x.shape[1], name, limits)
    if x.shape[0] == 0:
        raise AudioError(name, "has no samples")
    if limits.max_duration_s is not None and x.shape[0] / input_rate > limits.max_duration_s:
        raise AudioError(name, f"is longer than the {limits.max_duration_s:g} s limit")
    out = Output(sample_rate=sample_rate, chunk=chunk, limits=limits, name=name)
    step = int(input_rate) * 10  # downmix and resample in 10 s pieces to bound memory
    for i in range(0, x.shape[0], step):
        yield from out.push(np.ascontiguousarray(downmix(x[i : i + step])), int(input_rate))
    yield from out.finish()


def as_float_2d(array: np.ndarray, name: str) -> np.ndarray:
    """``(samples, channels)`` float32 in [-1, 1) for ints; the shorter axis of a 2-D array is channels."""
    x = np.asarray(array)
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim == 2:
        if x.shape[0] < x.shape[1]:
            x = x.T
    else:
        raise AudioError(name, f"an audio array must be 1-D or 2-D, not {x.ndim}-D")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise AudioError(name, f"an audio array must hold numbers, not {x.dtype}")
    x = to_float32(x)
    if not np.isfinite(x).all():
        raise AudioError(name, "contains NaN or infinite samples")
    return x


def downmix(x: np.ndarray) -> np.ndarray:
    """The one downmix rule, for files, arrays, streams, stdin and microphones alike.

    ``(samples, channels)`` float32 -> mono float32: the plain mean of the channels
    (a stereo signal with the same audio in both channels keeps its level).
    """
    return x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]


def to_float32(x: np.ndarray) -> np.ndarray:
    """Samples as float32: integers scaled to [-1, 1) (unsigned ones centred), floats as they are."""
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        out: np.ndarray = (x.astype(np.float32) - (info.max + info.min + 1) / 2) / (
            (info.max - info.min + 1) / 2
        )
        return out
    return x.astype(np.float32, copy=False)
