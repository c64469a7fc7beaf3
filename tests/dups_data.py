"""A generated library of duplicates: recordings in several versions, plus unrelated files of the same kinds.

Signals that change over time (what Chromaprint tells apart): noise textures
(noise through random levels and colours every 0.08-0.4 s), chirp trains
(random sweeps) and click mixes (random clicks over a breathing noise floor),
built on :mod:`earmark.synth`'s sounds. Each recording is written as a 48 kHz
wav master plus 1-3 of: mp3 128k, ogg 22 kHz mono, a wav trimmed by 0.5 s at
the start. One ffmpeg process writes many files (start-up dominates).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from earmark import synth

RATE = synth.RATE
KINDS = ("noise", "chirp", "clicks")
VERSIONS = {  # suffix -> ffmpeg output arguments
    ".wav": ["-c:a", "pcm_s16le"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".ogg": ["-ar", "22050", "-ac", "1", "-c:a", "libvorbis"],
    " trimmed.wav": ["-ss", "0.5", "-c:a", "pcm_s16le"],
}


def texture(kind: str, seconds: float, seed: int) -> np.ndarray:
    """A recording that changes over time; the same (kind, seed) gives the same samples."""
    rng = np.random.default_rng([seed, KINDS.index(kind), 19])
    n = int(seconds * RATE)
    out = np.zeros(n)
    pos = 0
    if kind == "noise":
        white = synth.make("noise", seconds, seed=seed).astype(np.float64)
        while pos < n:
            seg = int(rng.uniform(0.08, 0.4) * RATE)
            k = rng.uniform(0.0, 0.98)  # one-pole low-pass: the colour
            x = lfilter([1 - k], [1, -k], white[pos : pos + seg])
            out[pos : pos + seg] = x / (np.std(x) + 1e-9) * rng.uniform(0.02, 0.3)
            pos += seg
    elif kind == "chirp":
        phase = 0.0
        while pos < n:
            seg = min(int(rng.uniform(0.15, 0.6) * RATE), n - pos)
            f0, f1 = rng.uniform(150, 6000, 2)
            f = f0 + (f1 - f0) * np.arange(seg) / seg
            p = phase + 2 * np.pi * np.cumsum(f) / RATE
            out[pos : pos + seg] = np.sin(p) * rng.uniform(0.2, 0.8)
            phase, pos = float(p[-1]), pos + seg
    else:
        t = np.arange(n) / RATE
        out = (
            synth.make("noise", seconds, seed=seed) * 0.1 * (1 + np.sin(2 * np.pi * rng.uniform(0.2, 2) * t))
        )
        burst = np.exp(-np.arange(int(0.004 * RATE)) / (0.0008 * RATE))
        at = 0.0
        while at < n:
            i = int(at)
            b = burst * rng.standard_normal(burst.size) * rng.uniform(0.2, 1.0)
            out[i : i + b.size] += b[: n - i]
            at += RATE * rng.uniform(0.03, 0.35)
    return np.clip(out, -1, 1).astype(np.float32)


def _write(jobs: list[tuple[np.ndarray, list[tuple[Path, list[str]]]]], tmp: Path) -> None:
    """One ffmpeg call per job group: every input once, each of its outputs."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    outs: list[str] = []
    for n, (wave, targets) in enumerate(jobs):
        raw = tmp / f"{os.getpid()}-{id(wave)}-{n}.f32"
        raw.write_bytes(wave.tobytes())
        cmd += ["-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", str(raw)]
        for path, args in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            outs += ["-map", f"{n}:a", *args, str(path)]
    subprocess.run(cmd + outs, check=True)


def write_versions(jobs: list[tuple[np.ndarray, list[tuple[Path, list[str]]]]], chunk: int = 12) -> None:
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
        list(pool.map(lambda c: _write(c, Path(tmp)), chunks))


def make_duplicates_library(
    root: Path, recordings: int = 30, unrelated: int = 12, seconds: float = 6.0
) -> dict[str, list[str]]:
    """Write the library; returns {recording name: [relative paths of its versions]} and
    ``"unrelated"``: [paths of files that duplicate nothing]."""
    manifest: dict[str, list[str]] = {}
    jobs = []
    suffixes = list(VERSIONS)
    for i in range(recordings):
        kind = KINDS[i % len(KINDS)]
        name = f"{kind} {i:02d}"
        chosen = [".wav", *suffixes[1 : 2 + i % 3]] if i % 4 else [".wav", " trimmed.wav", ".ogg"]
        targets = [(root / kind / f"{name}{s}", VERSIONS[s]) for s in chosen]
        manifest[name] = [str(p.relative_to(root)) for p, _ in targets]
        jobs.append((texture(kind, seconds, seed=i), targets))
    manifest["unrelated"] = []
    for j in range(unrelated):
        kind = KINDS[j % len(KINDS)]
        suffix = (".wav", ".mp3")[j % 2]
        path = root / "other" / f"{kind} other {j:02d}{suffix}"
        manifest["unrelated"].append(str(path.relative_to(root)))
        jobs.append((texture(kind, seconds, seed=1000 + j), [(path, VERSIONS[suffix])]))
    write_versions(jobs)
    return manifest
