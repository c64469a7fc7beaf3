"""`earmark serve --ray` against `earmark serve`: requests/s at c=16 with 1 and 2 replicas, and the
Serve path's overhead at c=1; writes bench/RESULTS-serve-ray.md.

Each configuration is a real server (the same closed-loop client as bench/bench_serve.py: 10 s mp3
uploads, 5 labels, N requests in flight for a fixed time); the Ray ones start their own local
cluster. The default model is the tiny test model, so the figures measure the serving path
(upload, decode, routing, batching) more than the model; pass --model for a full-size one
(bench/fullsize.py). Its scores mean nothing and are never reported.

    python bench/bench_serve_ray.py [--model DIR] [--seconds 10] [--out bench/RESULTS-serve-ray.md]

Not collected by pytest; run it on a quiet machine (the load is recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_serve import Level, make_clips, run_level, start_server  # noqa: E402
from host import cpu_name, uptime  # noqa: E402

CONFIGS: list[tuple[str, list[str], list[int]]] = [  # name, extra `earmark serve` arguments, concurrencies
    ("earmark serve", [], [1, 16]),
    ("--ray, 1 replica", ["--ray", "--replicas", "1", "--replica-cpus", "1"], [1, 16]),
    ("--ray, 2 replicas", ["--ray", "--replicas", "2", "--replica-cpus", "1"], [16]),
]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(model: Path, seconds: float, warm_s: float) -> dict[tuple[str, int], Level]:
    results: dict[tuple[str, int], Level] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp))
        for name, extra, levels in CONFIGS:
            home = Path(tmp) / f"home-{len(results)}"
            home.mkdir()
            args = ["--no-ui", "--setting", "decode_workers", "1", *extra]
            proc, url, _ = start_server(model, 1, home, args)
            try:
                for c in levels:
                    results[(name, c)] = asyncio.run(run_level(url, clips, c, seconds, warm_s))
                    lvl = results[(name, c)]
                    print(
                        f"{name:20s} c={c:<3d} {lvl.throughput:6.1f} req/s  p50 {lvl.pct_ms(50):7.1f} ms",
                        flush=True,
                    )
            finally:
                stop(proc)
    return results


def report(results: dict[tuple[str, int], Level], model: Path, seconds: float, load: tuple[str, str]) -> str:
    base1 = results[("earmark serve", 1)]
    ray1 = results[("--ray, 1 replica", 1)]
    one, two = results[("--ray, 1 replica", 16)], results[("--ray, 2 replicas", 16)]
    rows = "\n".join(
        f"| {name} | {c} | {lvl.throughput:.1f} | {lvl.pct_ms(50):.0f} | {lvl.pct_ms(99):.0f} | {sum(lvl.errors.values())} |"
        for (name, c), lvl in results.items()
    )
    tiny = model.name == "tiny-clap"
    kind = "the tiny test model: the figures measure the serving path, not CLAP" if tiny else "random weights"
    return f"""# `earmark serve --ray` (issue 18)

Machine: {os.cpu_count()} cores ({cpu_name()}), no GPU. Load before: `{load[0]}`; after: `{load[1]}`.
**The machine was shared with other work: absolute figures are unreliable; the ratios were measured
in one run, back to back.** Model: `{model.name}` ({kind}). Load: a
closed loop keeping c requests in flight for {seconds:g} s per level (after a warm-up), each a 10 s
mp3 (128 kbps) with 5 labels; every server with `--threads 1 --setting decode_workers 1`, each Ray
replica 1 CPU, the Ray cluster local (started by the server).

| server | concurrency | req/s | p50 ms | p99 ms | errors |
|---|---|---|---|---|---|
{rows}

- **Serve path overhead at c=1:** p50 {ray1.pct_ms(50):.0f} ms on Ray vs {base1.pct_ms(50):.0f} ms
  (x{ray1.pct_ms(50) / base1.pct_ms(50):.2f}): the proxy and the hop to the replica actor.
- **2 replicas vs 1 at c=16:** x{two.throughput / one.throughput:.2f} requests/s. Every server runs
  the model on one thread (`--threads 1`), so two replicas use both of this machine's cores where
  one replica (or `earmark serve --threads 1`) uses one: a gain here is the second core, not Ray,
  and the replicas share those cores with the decoders and the proxy. The point is that the same
  code runs unchanged on a cluster, where each replica gets its own CPUs or GPU.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "tests" / "assets" / "tiny-clap")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warm-s", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-serve-ray.md")
    args = parser.parse_args()
    os.environ.setdefault("EARMARK_BACKEND", "torch")
    before = uptime()
    started = time.perf_counter()
    results = measure(args.model, args.seconds, args.warm_s)
    text = report(results, args.model, args.seconds, (before, uptime()))
    args.out.write_text(text)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
