"""Decoding speed and memory, and what isolation in worker processes costs.

Run on demand (not collected by pytest):

    PYTHONPATH=src python bench/bench_audio.py            # writes bench/RESULTS-audio.md

Measures: in-process decode speed per format (60 s clip to 48 kHz mono); a
30-minute file through ``audio.stream`` (time and peak RSS growth, in a fresh
process); the DecoderPool's worker start-up and per-call overhead; and the two
ways of returning a large result from a worker (pickled array vs raw bytes
received straight into the result), which decided the pool's protocol.
"""

from __future__ import annotations

import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from earmark import audio, synth  # noqa: E402 - after the path set-up above
from earmark.audio.isolate import DecoderPool  # noqa: E402
from helpers import CODECS, encode  # noqa: E402

RATE = 48_000


def best_ms(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def formats(d: Path) -> list[str]:
    wave = synth.sequence([("hum", 20.0), ("chirp", 20.0), ("noise", 20.0)])
    rows = ["| format | 60 s clip → 48 kHz mono | × real time |", "|---|---:|---:|"]
    for ext in CODECS:
        path = encode(wave, d / f"clip{ext}")
        ms = best_ms(lambda p=path: audio.decode(p, sample_rate=RATE))  # type: ignore[misc]
        rows.append(f"| {ext[1:]} | {ms:.0f} ms | {60_000 / ms:.0f}× |")
    for rate in (8_000, 44_100, 192_000):
        path = encode(synth.make("chirp", 60.0, rate=rate), d / f"r{rate}.flac", rate=rate)
        ms = best_ms(lambda p=path: audio.decode(p, sample_rate=RATE))  # type: ignore[misc]
        rows.append(f"| flac at {rate} Hz (resampled) | {ms:.0f} ms | {60_000 / ms:.0f}× |")
    six = d / "six.flac"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(d / "clip.flac"), "-ac", "6", str(six)],
        check=True,
    )
    ms = best_ms(lambda: audio.decode(six, sample_rate=RATE))
    rows.append(f"| flac 5.1 (downmixed) | {ms:.0f} ms | {60_000 / ms:.0f}× |")
    return rows


def thirty_minutes(d: Path) -> list[str]:
    one = encode(synth.make("chirp", 1.0, rate=16_000), d / "one.wav", rate=16_000)
    long = d / "thirty.wav"
    loop = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "1799", "-i", str(one)]
    subprocess.run([*loop, "-c", "copy", str(long)], check=True)
    script = f"""
import resource, time
from earmark import audio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
n = sum(c.size for c in audio.stream({str(long)!r}, sample_rate=48000))
dt = time.perf_counter() - t
print(n, dt, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    n, dt, grew = out.stdout.split()
    return [
        (
            f"- 30-minute 16 kHz WAV ({long.stat().st_size / 1e6:.0f} MB) through `audio.stream` at 48 kHz: "
            f"{float(dt):.1f} s ({1800 / float(dt):.0f}× real time), {int(n) / RATE / 60:.0f} min out; "
            f"peak RSS grew {float(grew):.1f} MB (the whole result would be {int(n) * 4 / 1e6:.0f} MB)."
        )
    ]


def pool_costs(d: Path) -> list[str]:
    clip = encode(synth.make("beep", 10.0), d / "ten.mp3").read_bytes()
    long = encode(synth.make("chirp", 600.0, rate=16_000), d / "ten-min.flac", rate=16_000)
    rows = []
    start = time.perf_counter()
    with DecoderPool(workers=1) as pool:
        pool.decode(clip, sample_rate=RATE)
        rows.append(f"- first call (starts a worker): {(time.perf_counter() - start) * 1000:.0f} ms")
        warm = [best_ms(lambda: pool.decode(clip, sample_rate=RATE), 1) for _ in range(20)]
        local = [best_ms(lambda: audio.decode(clip, sample_rate=RATE), 1) for _ in range(20)]
        rows.append(
            f"- 10 s mp3 from bytes: in-process median {statistics.median(local):.1f} ms, "
            f"in a warm worker {statistics.median(warm):.1f} ms"
        )
        big_pool = best_ms(lambda: pool.decode(long, sample_rate=RATE), 3)
        big_local = best_ms(lambda: audio.decode(long, sample_rate=RATE), 3)
        rows.append(
            f"- 10-minute flac → 48 kHz (115 MB of float32): in-process {big_local:.0f} ms, "
            f"in a worker {big_pool:.0f} ms"
        )
    return rows


def transfer() -> list[str]:
    """Moving 10 minutes of 48 kHz float32 (115 MB) through a pipe, both ways of doing it."""
    x = np.random.default_rng(0).standard_normal(600 * RATE).astype(np.float32)
    chunks = np.array_split(x, 600)

    def run(send, recv) -> float:  # type: ignore[no-untyped-def]
        r, w = os.pipe()
        rx, tx = Connection(r, writable=False), Connection(w, readable=False)
        t = threading.Thread(target=send, args=(tx,))
        start = time.perf_counter()
        t.start()
        recv(rx)
        t.join()
        rx.close()
        tx.close()
        return (time.perf_counter() - start) * 1000

    def send_pickle(tx: Connection) -> None:
        tx.send_bytes(pickle.dumps(np.concatenate(chunks), protocol=pickle.HIGHEST_PROTOCOL))

    def recv_pickle(rx: Connection) -> None:
        pickle.loads(rx.recv_bytes())

    def send_raw(tx: Connection) -> None:
        for c in chunks:
            tx.send_bytes(c.data)

    def recv_raw(rx: Connection) -> None:
        out = np.empty(x.size, np.float32)
        view, got = out.data.cast("B"), 0
        while got < view.nbytes:
            got += rx.recv_bytes_into(view[got:])

    pick = min(run(send_pickle, recv_pickle) for _ in range(3))
    raw = min(run(send_raw, recv_raw) for _ in range(3))
    return [
        (
            f"- 115 MB result over a pipe: concatenate + pickle + unpickle {pick:.0f} ms; "
            f"raw chunks received straight into the result {raw:.0f} ms (chosen; also never unpickles "
            "what a possibly compromised worker sends)"
        )
    ]


def machine() -> str:
    from host import cpu_name, uptime

    cpu, load = cpu_name(), uptime()
    import av

    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, PyAV {av.__version__}. `uptime`: {load}"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sections = [
            "# Audio decoding benchmark (`bench/bench_audio.py`)",
            "",
            f"Machine: {machine()}",
            "",
            "Best of 5 runs. The machine is shared with other jobs, so treat the numbers as lower bounds on speed.",
            "",
            "## Decode speed, in process",
            "",
            *formats(d),
            "",
            "## Long files stream in bounded memory",
            "",
            *thirty_minutes(d),
            "",
            "## Isolation in worker processes (`earmark.audio.isolate.DecoderPool`)",
            "",
            *pool_costs(d),
            *transfer(),
            "",
        ]
    text = "\n".join(sections)
    (ROOT / "bench" / "RESULTS-audio.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
