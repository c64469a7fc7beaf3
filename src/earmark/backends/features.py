"""CLAP log-mel features for a batch of windows, vectorised in numpy.

transformers' ``ClapFeatureExtractor`` computes the same features one frame at
a time in a Python loop (about 25 ms per 10 s window here) and, across a
batch, marks a random clip as "longer". This module computes them for a whole
batch at once (strided frames, one batched FFT, one mel matmul) and never
looks at the other windows, so a window's features are the same alone or in
any batch. It needs numpy and scipy only, so the ONNX Runtime path runs without torch
or transformers.

Only windows of at most ``max_samples`` are handled (earmark cuts long audio
into windows first); for those the reference's only choices are the padding
mode and the filter bank, both read from ``preprocessor_config.json``.
Parity with the reference is tested in ``tests/test_backends_features.py``.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft

__all__ = ["FeaturesMixin", "LogMel", "MelSettings", "mel_filter_bank"]

FRAME_BLOCK = 128


@dataclass(frozen=True, kw_only=True)
class MelSettings:
    """The feature settings of a CLAP checkpoint (``preprocessor_config.json``).

    Attributes:
        sample_rate: audio rate in Hz.
        fft_size: STFT frame length in samples.
        hop_samples: STFT hop in samples.
        n_mels: mel bands.
        min_hz: lowest mel frequency.
        max_hz: highest mel frequency.
        max_samples: window length the model sees (10 s).
        truncation: ``fusion`` (4 stacked copies, HTK filters) or ``rand_trunc`` (one, Slaney filters).
        padding: ``repeatpad``, ``repeat`` or ``pad`` for windows shorter than ``max_samples``.
    """

    sample_rate: int = 48_000
    fft_size: int = 1024
    hop_samples: int = 480
    n_mels: int = 64
    min_hz: float = 0.0
    max_hz: float = 14_000.0
    max_samples: int = 480_000
    truncation: str = "fusion"
    padding: str = "repeatpad"

    @classmethod
    def from_folder(cls, path: str | Path) -> MelSettings:
        """Read ``preprocessor_config.json`` of a model folder."""
        cfg: dict[str, Any] = json.loads((Path(path) / "preprocessor_config.json").read_text())
        rate = int(cfg.get("sampling_rate", 48_000))
        return cls(
            sample_rate=rate,
            fft_size=int(cfg.get("fft_window_size", 1024)),
            hop_samples=int(cfg.get("hop_length", 480)),
            n_mels=int(cfg.get("feature_size", 64)),
            min_hz=float(cfg.get("frequency_min", 0)),
            max_hz=float(cfg.get("frequency_max", 14_000)),
            max_samples=int(cfg.get("max_length_s", 10)) * rate,
            truncation=str(cfg.get("truncation", "fusion")),
            padding=str(cfg.get("padding", "repeatpad")),
        )


def _hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    mels = 3.0 * hz / 200.0
    log_region = hz >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4)), mels)


def _mel_to_hz(mels: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (np.power(10.0, mels / 2595.0) - 1.0)
    freq = 200.0 * mels / 3.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0)), freq)


def mel_filter_bank(
    n_bins: int, n_mels: int, min_hz: float, max_hz: float, rate: int, *, slaney: bool
) -> np.ndarray:
    """(n_bins, n_mels) triangular filters, as transformers' ``mel_filter_bank`` builds them.

    Args:
        n_bins: FFT bins (``fft_size // 2 + 1``).
        n_mels: filters.
        min_hz: lowest edge.
        max_hz: highest edge.
        rate: sample rate in Hz.
        slaney: Slaney scale and area normalisation (librosa); else HTK without norm (torchaudio).

    Returns:
        float64 filter matrix.
    """
    scale = "slaney" if slaney else "htk"
    lo, hi = _hz_to_mel(np.array([min_hz, max_hz], dtype=np.float64), scale)
    edges = _mel_to_hz(np.linspace(lo, hi, n_mels + 2), scale)
    fft_hz = np.linspace(0, rate // 2, n_bins)
    diff = np.diff(edges)
    slopes = edges[None, :] - fft_hz[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    if slaney:
        bank *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[None, :]
    return bank


_BLAS_LIMITED = False


def _single_thread_blas() -> None:
    """Put numpy's BLAS on one thread, once per process.

    Measured here: OpenBLAS threads spinning after the mel matmul make feature
    extraction 30 % slower on 2 cores (1.2 ms vs 7.7 ms for the matmul) and
    steal the model's cores. Set once for the process rather than per call:
    threadpoolctl's limit is process-wide, so a per-call context is racy when
    several threads extract features.
    """
    global _BLAS_LIMITED
    if not _BLAS_LIMITED:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        _BLAS_LIMITED = True


class LogMel:
    """Batched log-mel features of windows, equal to the single-clip ``ClapFeatureExtractor``.

    Args:
        settings: the checkpoint's feature settings.
    """

    def __init__(self, settings: MelSettings) -> None:
        _single_thread_blas()
        self.settings = settings
        s = settings
        # periodic Hann window, as transformers' window_function(n, "hann")
        self._window = np.hanning(s.fft_size + 1)[:-1]
        self.fusion = s.truncation == "fusion"
        bank = mel_filter_bank(
            s.fft_size // 2 + 1, s.n_mels, s.min_hz, s.max_hz, s.sample_rate, slaney=not self.fusion
        )
        self._bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.channels = 4 if self.fusion else 1
        self.frames = s.max_samples // s.hop_samples + 1
        self._buffers = threading.local()  # per thread: features are computed on several at once

    def padded(self, window: np.ndarray) -> np.ndarray:
        """A window brought to ``max_samples`` the way the reference pads short clips."""
        s = self.settings
        x = np.asarray(window, dtype=np.float32).reshape(-1)
        if x.size > s.max_samples:
            raise ValueError(f"a window holds at most {s.max_samples} samples, got {x.size}")
        if x.size == 0:
            raise ValueError("a window needs at least one sample")
        if x.size == s.max_samples:
            return x
        if s.padding == "repeat":
            return np.tile(x, s.max_samples // x.size + 1)[: s.max_samples]
        if s.padding == "repeatpad":
            x = np.tile(x, s.max_samples // x.size)
        return np.pad(x, (0, s.max_samples - x.size))

    def __call__(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Features of each window.

        Args:
            windows: 1-D float arrays of at most ``max_samples`` samples at the model's rate.

        Returns:
            (n, channels, frames, n_mels) float32; 4 identical channels for fused models
            (what the reference gives a clip of at most 10 s).
        """
        s = self.settings
        n = len(windows)
        out = np.empty((n, self.channels, self.frames, s.n_mels), dtype=np.float32)
        for i, w in enumerate(windows):  # one window at a time bounds the temporary STFT memory
            mel = self._log_mel(self.padded(w))
            out[i] = mel[None]
        return out

    def _reflect_padded(self, x: np.ndarray) -> np.ndarray:
        """``np.pad(x, fft_size // 2, mode="reflect")`` in float64, in this thread's reused buffer.

        A fresh 3.8 MB array per window costs its page faults every call (measured: 5.2 ms of an
        11 ms window, against 0.2 ms for the copy into a buffer already mapped).
        """
        half = self.settings.fft_size // 2
        n = x.size + 2 * half
        buf: np.ndarray | None = getattr(self._buffers, "padded", None)
        if buf is None or buf.size < n:
            buf = np.empty(n, np.float64)
            self._buffers.padded = buf
        out = buf[:n]
        out[half : n - half] = x
        out[:half] = x[half:0:-1]
        out[n - half :] = x[-2 : -half - 2 : -1]
        return out

    def _log_mel(self, x: np.ndarray) -> np.ndarray:
        s = self.settings
        x = self._reflect_padded(x)
        frames = np.lib.stride_tricks.sliding_window_view(x, s.fft_size)[:: s.hop_samples]
        mel = np.empty((frames.shape[0], s.n_mels), dtype=np.float32)
        # blocks of frames: temporaries stay in cache and are not page-faulted in afresh on every
        # call (measured: 3.2 ms per window instead of 10 ms for the whole window at once)
        for i in range(0, frames.shape[0], FRAME_BLOCK):
            # float64 FFT as the reference: in float32, rounding of the loud bins (~1e-7 of the
            # peak) swamps bins 100 dB down (pure tones), several dB off. scipy's FFT is 3x numpy's.
            spec = scipy.fft.rfft(frames[i : i + FRAME_BLOCK] * self._window, axis=-1, workers=1)
            power = (spec.real * spec.real + spec.imag * spec.imag).astype(np.float32)
            np.matmul(
                power, self._bank, out=mel[i : i + FRAME_BLOCK]
            )  # float32: each bin has its own exponent
        np.maximum(mel, 1e-10, out=mel)
        np.log10(mel, out=mel)
        mel *= 10.0
        return mel


class FeaturesMixin:
    """``features``, ``window_features``, ``embed_audio``, ``fingerprint`` and ``streams`` for a
    backend holding a :class:`LogMel` as ``self._mel``, its model folder as ``self.path`` and
    implementing ``embed_features``."""

    _mel: LogMel
    dim: int
    path: Path
    streams: int = 1  # model calls at once; a backend whose runtime allows more says so

    @functools.cached_property
    def fingerprint(self) -> str:
        """What the model computes (weights digest, config, feature version): the key of stored vectors."""
        from .identity import model_fingerprint

        return model_fingerprint(self.path)

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) L2-normalised embeddings of windows of at most the model's window length."""
        if not len(windows):
            return np.zeros((0, self.dim), np.float32)
        return self.embed_features(self.window_features(windows))

    def features(self, window: np.ndarray) -> np.ndarray:
        """Log-mel features of one window, as the single-clip reference computes them."""
        out: np.ndarray = self._mel([np.asarray(window)])[0]
        return out

    def window_features(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Features of a batch of windows (n, channels, frames, mels); thread-safe, no model."""
        return self._mel(windows)
