"""Test helpers: synthetic sounds encoded to real files with ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from earmark import synth

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "tests" / "assets" / "tiny-clap"
LABELS = list(synth.SOUNDS)  # the tiny model's vocabulary

# ffmpeg output arguments per extension
CODECS: dict[str, list[str]] = {
    ".wav": ["-c:a", "pcm_s16le"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".ogg": ["-c:a", "libvorbis"],
    ".opus": ["-c:a", "libopus", "-b:a", "96k"],
    ".flac": ["-c:a", "flac"],
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
    ".aiff": ["-c:a", "pcm_s16be"],
    ".webm": ["-c:a", "libopus"],
}


def encode(
    wave: np.ndarray,
    path: Path | str,
    *,
    rate: int = synth.RATE,
    out_rate: int | None = None,
    channels: int = 1,
    extra: list[str] | None = None,
) -> Path:
    """Write a float32 mono wave to ``path`` with ffmpeg; the format follows the extension.

    Args:
        wave: float32 samples at ``rate``.
        path: destination file.
        out_rate: resample to this rate in the file.
        channels: duplicate the signal into this many channels.
        extra: ffmpeg output arguments replacing the default codec choice.
    """
    path = Path(path)
    args = extra if extra is not None else CODECS.get(path.suffix.lower(), [])
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "-"]
    if channels != 1:
        cmd += ["-ac", str(channels)]
    if out_rate:
        cmd += ["-ar", str(out_rate)]
    cmd += [*args, str(path)]
    subprocess.run(cmd, input=np.asarray(wave, dtype=np.float32).tobytes(), check=True)
    return path


def sound_file(tmp: Path, kind: str, seconds: float, ext: str = ".wav", seed: int = 0) -> Path:
    """A synthetic sound of the tiny model's vocabulary, encoded to ``tmp/kind-seed.ext``."""
    return encode(synth.make(kind, seconds, seed=seed), tmp / f"{kind}-{seed}{ext}")


def labelled_folder(root: Path, spec: dict[str, list[np.ndarray]], ext: str = ".wav") -> Path:
    """A folder with one sub-folder per class: ``spec`` maps class name -> waves (48 kHz float32).

    Files are named ``<class>/<class>-<n><ext>``; returns ``root``.
    """
    for name, waves in spec.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for n, wave in enumerate(waves):
            encode(wave, root / name / f"{name}-{n}{ext}")
    return root
