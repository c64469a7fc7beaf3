"""Event clips: encode a float32 mono array to the user's audio format with PyAV."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, ConfigError

__all__ = ["CLIP_FORMATS", "write_clip"]

# format -> (container, codec, encoder rate or None for the input rate, bit rate or None)
CLIP_FORMATS: dict[str, tuple[str, str, int | None, int | None]] = {
    "wav": ("wav", "pcm_s16le", None, None),
    "flac": ("flac", "flac", None, None),
    "ogg": ("ogg", "libopus", 48_000, 64_000),
    "opus": ("ogg", "libopus", 48_000, 64_000),
    "mp3": ("mp3", "libmp3lame", None, 128_000),
    "m4a": ("ipod", "aac", None, 128_000),
}


def check_format(fmt: str) -> str:
    if fmt not in CLIP_FORMATS:
        raise ConfigError(f"clip format {fmt!r} is not supported; expected one of: {', '.join(CLIP_FORMATS)}")
    return fmt


def write_clip(samples: np.ndarray, rate: int, path: str | os.PathLike[str], fmt: str) -> Path:
    """Encode ``samples`` (float32 mono at ``rate``) to ``path`` in format ``fmt``.

    The file appears complete or not at all: it is written beside its name and
    renamed, so a reader never sees half a clip.

    Returns:
        The path written.

    Raises:
        AudioError: encoding failed.
    """
    import av

    container_fmt, codec, codec_rate, bit_rate = CLIP_FORMATS[check_format(fmt)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    try:
        with av.open(str(tmp), mode="w", format=container_fmt) as out:
            st: Any = out.add_stream(codec, rate=codec_rate or rate, layout="mono")
            if bit_rate:
                st.bit_rate = bit_rate
            resampler = av.AudioResampler(
                format=st.codec_context.format.name, layout="mono", rate=codec_rate or rate
            )
            step = rate  # one second per frame keeps memory flat for long clips
            for i in range(0, max(x.size, 1), step):
                frame = av.AudioFrame.from_ndarray(x[None, i : i + step].copy(), format="flt", layout="mono")
                frame.sample_rate = rate
                for f in resampler.resample(frame):
                    out.mux(st.encode(f))
            for f in resampler.resample(None):
                out.mux(st.encode(f))
            out.mux(st.encode(None))
        os.replace(tmp, path)
    except (av.error.FFmpegError, OSError, ValueError) as ex:
        tmp.unlink(missing_ok=True)
        raise AudioError(str(path), f"cannot write the clip ({ex})") from None
    return path
