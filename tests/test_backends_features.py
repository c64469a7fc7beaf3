"""The vectorised log-mel features equal transformers' ClapFeatureExtractor on single clips."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import ClapFeatureExtractor

from earmark import synth
from earmark.backends.features import LogMel, MelSettings, mel_filter_bank


def _reference(fe: ClapFeatureExtractor, wave: np.ndarray) -> np.ndarray:
    return np.asarray(fe(wave, sampling_rate=48_000, return_tensors="np")["input_features"][0])


CLIPS = [
    ("beep", 10.0),  # exactly one window: no padding
    ("noise", 3.3),  # repeat-padded
    ("clicks", 0.01),  # a few hundred samples: many repeats
    ("chirp", 9.99),
    ("silence", 4.0),  # near-silence: the -100 dB floor
]


@pytest.mark.parametrize(("kind", "seconds"), CLIPS)
def test_fused_features_equal_the_single_clip_extractor(tiny_model: str, kind: str, seconds: float) -> None:
    fe = ClapFeatureExtractor.from_pretrained(tiny_model)
    mel = LogMel(MelSettings.from_folder(tiny_model))
    wave = synth.make(kind, seconds, seed=7)
    want = _reference(fe, wave)
    got = mel([wave])[0]
    assert got.shape == want.shape == (4, 1001, 64)
    # dB values from -100 to +40; a float32 FFT would be several dB off in the quiet bins of a tone
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_all_zero_window_is_the_floor_not_nan(tiny_model: str) -> None:
    mel = LogMel(MelSettings.from_folder(tiny_model))
    got = mel([np.zeros(1000, np.float32)])
    assert np.isfinite(got).all() and np.allclose(got, -100.0)


@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
def test_unfused_settings_match_rand_trunc_with_slaney_filters(padding: str) -> None:
    """Unfused checkpoints use truncation=rand_trunc: one channel, Slaney filters (deterministic for <= 10 s)."""
    fe = ClapFeatureExtractor(truncation="rand_trunc", padding=padding)
    mel = LogMel(MelSettings(truncation="rand_trunc", padding=padding))
    wave = synth.make("hum", 2.7, seed=3)
    want = _reference(fe, wave)
    got = mel([wave])[0]
    assert got.shape == want.shape == (1, 1001, 64)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_filter_banks_equal_transformers() -> None:
    from transformers.audio_utils import mel_filter_bank as ref_bank

    for slaney in (False, True):
        want = ref_bank(
            num_frequency_bins=513,
            num_mel_filters=64,
            min_frequency=0,
            max_frequency=14_000,
            sampling_rate=48_000,
            norm="slaney" if slaney else None,
            mel_scale="slaney" if slaney else "htk",
        )
        got = mel_filter_bank(513, 64, 0.0, 14_000.0, 48_000, slaney=slaney)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_batch_equals_one_window_at_a_time(tiny_model: str) -> None:
    mel = LogMel(MelSettings.from_folder(tiny_model))
    waves = [synth.make(k, s, seed=i) for i, (k, s) in enumerate(CLIPS)]
    together = mel(waves)
    for i, w in enumerate(waves):
        np.testing.assert_array_equal(together[i], mel([w])[0])


def test_too_long_or_empty_windows_are_refused(tiny_model: str) -> None:
    mel = LogMel(MelSettings.from_folder(tiny_model))
    with pytest.raises(ValueError, match="at most 480000"):
        mel([np.zeros(480_001, np.float32)])
    with pytest.raises(ValueError, match="at least one sample"):
        mel([np.zeros(0, np.float32)])
