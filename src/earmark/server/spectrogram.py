"""A spectrogram picture of a clip, for the Events tab (pure numpy: samples in, RGB pixels out).

Log-frequency rows (low at the bottom), dB colour-mapped from the clip's own
peak down ``range_db``, so a short beep and a long hum both read at a glance.
"""

from __future__ import annotations

import numpy as np

__all__ = ["spectrogram_rgb"]

# dark blue -> purple -> orange -> pale yellow (perceptually ordered, readable in grey too)
_ANCHORS = np.array(
    [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
    dtype=np.float64,
)


def _colormap(x: np.ndarray) -> np.ndarray:
    """Values in 0..1 to RGB uint8."""
    pos = np.clip(x, 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb: np.ndarray = _ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac
    return rgb.astype(np.uint8)


def spectrogram_rgb(
    samples: np.ndarray,
    rate: int,
    *,
    height: int = 160,
    width: int = 640,
    range_db: float = 80.0,
    min_hz: float = 40.0,
) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 picture of ``samples`` (float mono at ``rate`` Hz).

    Columns are time (left to right, resampled to ``width``), rows are frequency on a
    log scale from ``min_hz`` to ``rate / 2`` (low at the bottom).
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    n_fft = 1024 if rate >= 32_000 else 512
    hop = max(1, n_fft // 4)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1)) ** 2  # (frames, bins)
    db = 10 * np.log10(spec + 1e-12)
    db = (db - (db.max() - range_db)) / range_db  # the clip's peak is 1, range_db below it is 0
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    rows_hz = np.geomspace(min_hz, rate / 2, height)[::-1]  # top row: highest frequency
    bins = np.clip(np.searchsorted(freqs, rows_hz), 0, freqs.size - 1)
    cols = np.clip(np.linspace(0, frames - 1, width).round().astype(int), 0, frames - 1)
    picture = db[cols][:, bins].T  # (height, width)
    return _colormap(picture)
