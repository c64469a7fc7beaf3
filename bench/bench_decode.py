"""earmark's decode of a 10 s mp3 against plain PyAV decode + resample, as a ratio in one run.

    PYTHONPATH=src python bench/bench_decode.py [--repeats 30]

Plain PyAV: open the file, one ``AudioResampler("flt", "mono", 48000)``, resample
every decoded frame, concatenate. earmark: ``earmark.audio.decode`` (checks,
downmix, resampling, chunking). Runs alternate (earmark, plain, earmark, ...)
so load changes hit both; the figure is the ratio of the medians. Target
(issue 17): earmark within 1.2x of plain PyAV.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "bench")]

from host import cpu_name, uptime  # noqa: E402

from earmark import audio, synth  # noqa: E402 - after the path set-up above
from helpers import encode  # noqa: E402

RATE = 48_000


def plain_pyav(path: Path) -> np.ndarray:
    """What a script would write with PyAV alone."""
    import av

    with av.open(str(path)) as container:
        resampler = av.AudioResampler("flt", "mono", RATE)
        parts = []
        for frame in container.decode(audio=0):
            parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(parts)


def earmark_decode(path: Path) -> np.ndarray:
    return audio.decode(path, sample_rate=RATE)


def compare(path: Path, repeats: int) -> tuple[float, float, float]:
    """Medians in ms (earmark, plain) and the largest sample difference."""
    a, b = earmark_decode(path), plain_pyav(path)
    n = min(a.size, b.size)
    diff = float(np.abs(a[:n] - b[:n]).max())
    times: dict[str, list[float]] = {"earmark": [], "plain": []}
    for _ in range(repeats):
        for name, fn in (("earmark", earmark_decode), ("plain", plain_pyav)):
            t0 = time.perf_counter()
            fn(path)
            times[name].append((time.perf_counter() - t0) * 1000)
    return statistics.median(times["earmark"]), statistics.median(times["plain"]), diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    print(f"# decode, 10 s clip; {cpu_name()}")
    print(f"load before: {uptime()}")
    with tempfile.TemporaryDirectory() as tmp:
        wave = synth.make("chirp", 10.0, seed=3)
        cases = {
            "mp3 44.1 kHz stereo": encode(wave, Path(tmp) / "a.mp3", out_rate=44_100, channels=2),
            "mp3 48 kHz mono": encode(wave, Path(tmp) / "b.mp3"),
        }
        for label, path in cases.items():
            ours, plain, diff = compare(path, args.repeats)
            print(
                f"- {label}: earmark {ours:.1f} ms, plain PyAV {plain:.1f} ms, "
                f"ratio {ours / plain:.2f} (target <= 1.2); max sample diff {diff:.1e}"
            )
    print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
