"""Fuzz the decode entry point (``earmark.audio.decode`` on bytes, as the decode workers call it).

Seeded with small valid files of every format the server takes and hand-made
broken ones (NaN, absurd floats, cut headers, unknown format tags), mutated by
Hypothesis: bit flips, overwritten words (0, 0xFFFFFFFF...), cuts, inserts and
spliced pieces. The only allowed outcome besides samples is :class:`AudioError`;
the samples must be finite float32.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earmark import audio
from earmark.errors import AudioError
from fuzz.harness import TARGETS, budget_s, run_for, seed_files, watchdog

LIMITS = audio.AudioLimits(max_duration_s=30.0, max_bytes=2_000_000, max_bad_packets=8)

_WORDS = [
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"\x01\x00\x00\x00",
]


@st.composite
def mutated(draw: Any, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "word", "cut", "insert", "splice", "zero"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "word":
            data[at : at + 4] = draw(st.sampled_from(_WORDS))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, max(0, len(other) - 1)))
            data[at:] = other[start : start + draw(st.integers(1, 4096))]
        else:
            data[at : at + draw(st.integers(1, 256))] = b"\0" * 16
    return bytes(data)


def decode_checked(data: bytes) -> None:
    with watchdog(), warnings.catch_warnings():
        warnings.simplefilter("ignore", audio.AudioWarning)
        try:
            samples = audio.decode(data, sample_rate=16000, limits=LIMITS, name="fuzz")
        except AudioError:
            return
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert np.isfinite(samples).all(), "decoded samples must be finite"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    return seed_files(tmp_path_factory.mktemp("fuzz-seeds"))


def test_seeds_decode_or_fail_cleanly(seeds: list[bytes]) -> None:
    for data in seeds:
        decode_checked(data)


def test_fuzz_decode(seeds: list[bytes]) -> None:
    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(mutated(seeds))
    def search(data: bytes) -> None:
        decode_checked(data)

    assert run_for(budget_s(TARGETS), search) >= 1


def test_fuzz_decode_random_bytes_behind_magic() -> None:
    magics = [
        b"RIFF\x00\x00\x00\x00WAVE",
        b"ID3",
        b"\xff\xfb",
        b"OggS",
        b"fLaC",
        b"\x1aE\xdf\xa3",
        b"FORM",
        b"",
    ]

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(magics), st.binary(max_size=2048))
    def search(magic: bytes, rest: bytes) -> None:
        decode_checked(magic + rest)

    assert run_for(budget_s(TARGETS * 4), search) >= 1


def test_seed_folder_is_not_left_in_the_repo() -> None:
    assert not (Path(__file__).parent / "seed.wav").exists()
