"""Decoding converts and resamples per block of frames, not per frame, with the same samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from earmark import audio, synth
from earmark.audio import pcm
from helpers import encode


def test_a_10_s_mp3_is_resampled_in_a_few_blocks_not_per_frame(tmp_path: Path, monkeypatch) -> None:
    path = encode(synth.make("chirp", 10.0, seed=2), tmp_path / "ten.mp3", out_rate=44_100, channels=2)
    calls: list[int] = []
    real = pcm.Output.push

    def counting(self, mono, in_rate):  # type: ignore[no-untyped-def]
        calls.append(mono.size)
        return real(self, mono, in_rate)

    monkeypatch.setattr(pcm.Output, "push", counting)
    got = audio.decode(path, sample_rate=48_000)
    assert 480_000 <= got.size <= 482_000, f"a 10 s mp3 decoded to {got.size / 48_000:.2f} s"
    assert len(calls) <= 10 / audio.DECODE_BLOCK_S + 2, (
        f"{len(calls)} resampler calls for 10 s: the decode loop resamples per frame again"
    )


def test_blocks_give_the_samples_frame_by_frame_decoding_gives(tmp_path: Path, monkeypatch) -> None:
    wave = synth.make("beep", 4.3, seed=5)
    for name, kw in {
        "s.mp3": {"out_rate": 44_100, "channels": 2},
        "m.flac": {},
        "six.wav": {"channels": 6},
    }.items():
        path = encode(wave, tmp_path / name, **kw)
        blocks = audio.decode(path, sample_rate=48_000)
        monkeypatch.setattr(audio, "DECODE_BLOCK_S", 1e-9)  # one frame per block
        frames = audio.decode(path, sample_rate=48_000)
        monkeypatch.undo()
        assert blocks.shape == frames.shape and np.array_equal(blocks, frames), (
            f"{name}: blocks changed samples"
        )
