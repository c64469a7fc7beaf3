"""Shared parts of the fuzz targets: the time budget, the hang watchdog, and the seed files."""

from __future__ import annotations

import faulthandler
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = 2  # test modules sharing the budget
HANG_S = float(os.environ.get("EARMARK_FUZZ_HANG_S", "20"))
"""One input taking longer than this is a hang: faulthandler dumps the stacks and exits non-zero."""


def budget_s(share: int) -> float:
    """Seconds for one fuzz test: the lane's budget split between ``share`` tests."""
    return float(os.environ.get("EARMARK_FUZZ_SECONDS", "60")) / share


@contextmanager
def watchdog() -> Iterator[None]:
    """Exit the process (non-zero, stacks on stderr) if the block runs past :data:`HANG_S`."""
    faulthandler.dump_traceback_later(HANG_S, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def run_for(seconds: float, search: Callable[[], None]) -> int:
    """Run a Hypothesis-decorated ``search`` again and again (fresh random seeds) for ``seconds``."""
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        search()
        rounds += 1
    return rounds


def float_wav(samples: Any, rate: int = 16000) -> bytes:
    data = np.asarray(samples, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


CODECS = {
    "wav": ["-c:a", "pcm_s16le"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "32k"],
    "ogg": ["-c:a", "libvorbis"],
    "opus": ["-c:a", "libopus", "-b:a", "24k"],
    "flac": ["-c:a", "flac"],
    "m4a": ["-c:a", "aac", "-b:a", "32k"],
    "aiff": ["-c:a", "pcm_s16be"],
    "webm": ["-c:a", "libopus"],
}


def seed_files(folder: Path) -> list[bytes]:
    """Small valid files of every format the server takes, plus hand-made broken ones."""
    from earmark import synth
    from helpers import encode

    wave = synth.make("beep", 0.6, seed=3).astype(np.float32)
    seeds = []
    for ext, args in CODECS.items():
        out = encode(wave, folder / f"seed.{ext}", extra=args)  # small bitrates: short seeds
        seeds.append(out.read_bytes())
    nan = wave[:8000].copy()
    nan[100:120] = np.nan
    seeds.append(float_wav(nan))
    seeds.append(float_wav(np.full(4000, 1e30, np.float32)))
    seeds.append(seeds[0][:60])  # a WAV cut inside its header
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 16000, 32000, 2, 16)  # a format tag no decoder knows
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 64) + b"\0" * 64
    )
    seeds.append(b"RIFF" + struct.pack("<I", len(body)) + body)
    return seeds
