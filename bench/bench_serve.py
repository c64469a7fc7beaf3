"""Load `earmark serve` with 10 s mp3 uploads and 5 labels; write bench/RESULTS-serve.md.

Runs a real server (uvicorn, the page mounted, default settings) on the full-size
random-weight clap-htsat-fused (speed and memory do not depend on weight values;
its scores mean nothing and are never reported). A closed-loop asyncio client keeps
N requests in flight for a fixed time at each concurrency and records every
latency. The server's peak RSS (its own process, and with its decode workers) is
sampled from /proc all along.

    python bench/bench_serve.py [--model DIR] [--seconds 20] [--concurrency 1 4 16] [--threads N]

Not collected by pytest; run it on a quiet machine (the load is recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

LABELS = "dog barking, glass breaking, smoke alarm, footsteps, silence"
TARGETS = {"throughput_c16": 15.0, "p99_c1_ms": 150.0, "peak_rss_mib": 1024.0}


def make_clips(folder: Path, n: int = 16) -> list[bytes]:
    """``n`` different 10 s mp3 files (synthetic sounds, 128 kbps, 48 kHz)."""
    from earmark import synth

    kinds = list(synth.SOUNDS)
    clips = []
    for i in range(n):
        wave = synth.make(kinds[i % len(kinds)], 10.0, seed=i)
        path = folder / f"clip{i}.mp3"
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "f32le",
                "-ar",
                "48000",
                "-ac",
                "1",
                "-i",
                "-",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "128k",
                str(path),
            ],
            input=wave.tobytes(),
            check=True,
        )
        clips.append(path.read_bytes())
    return clips


class RssSampler:
    """Peak resident memory of a process, and of it plus its children, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_self = self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0
        m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
        return int(m.group(1)) * 1024 if m else 0

    def _children(self) -> list[int]:
        out = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    def now(self) -> tuple[int, int]:
        own = self._rss(self.pid)
        return own, own + sum(self._rss(c) for c in self._children())

    def _run(self) -> None:
        while not self._stop.is_set():
            own, total = self.now()
            self.peak_self, self.peak_total = max(self.peak_self, own), max(self.peak_total, total)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def start_server(
    model: Path, threads: int | None, home: Path, extra: list[str]
) -> tuple[subprocess.Popen[bytes], str, float]:
    env = dict(
        os.environ,
        EARMARK_HOME=str(home),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT / "src"),
    )
    cmd = [sys.executable, "-m", "earmark", "serve", "--model", str(model), "--port", "0"]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += extra
    start = time.perf_counter()
    with open(home / "server.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
    assert proc.stdout is not None
    for raw in proc.stdout:
        m = re.search(r"at (http://127\.0\.0\.1:\d+)/", raw.decode())
        if m:
            url = m.group(1)
            proc.announcement = raw.decode()  # type: ignore[attr-defined]  # backend and threads chosen
            break
    else:
        raise RuntimeError((home / "server.log").read_text()[-3000:])
    import httpx

    while httpx.get(url + "/readyz", timeout=5).status_code != 200:
        time.sleep(0.05)
    return proc, url, time.perf_counter() - start


@dataclass
class Level:
    concurrency: int
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    model_ms_per_window: float = 0.0
    decode_ms: float = 0.0

    def pct_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds else 0.0


async def run_level(url: str, clips: list[bytes], concurrency: int, seconds: float, warm_s: float) -> Level:
    import httpx

    level = Level(concurrency)
    counter = iter(range(10**9))

    async def worker(client: httpx.AsyncClient, until: float, record: bool) -> None:
        while time.perf_counter() < until:
            clip = clips[next(counter) % len(clips)]
            start = time.perf_counter()
            r = await client.post(
                "/api/v1/classify", files={"file": ("clip.mp3", clip)}, data={"labels": LABELS}
            )
            if not record:
                continue
            if r.status_code == 200:
                level.latencies_s.append(time.perf_counter() - start)
            else:
                level.errors[r.status_code] = level.errors.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        warm_until = time.perf_counter() + warm_s
        await asyncio.gather(*(worker(client, warm_until, False) for _ in range(concurrency)))
        before = _metrics((await client.get("/metrics")).text)
        start = time.perf_counter()
        await asyncio.gather(*(worker(client, start + seconds, True) for _ in range(concurrency)))
        level.seconds = time.perf_counter() - start
        after = _metrics((await client.get("/metrics")).text)
    windows = after["batch_size_sum"] - before["batch_size_sum"]
    if windows:
        level.model_ms_per_window = (
            1000 * (after["batch_seconds_sum"] - before["batch_seconds_sum"]) / windows
        )
    decodes = after["decode_seconds_count"] - before["decode_seconds_count"]
    if decodes:
        level.decode_ms = 1000 * (after["decode_seconds_sum"] - before["decode_seconds_sum"]) / decodes
    return level


def _metrics(text: str) -> dict[str, float]:
    out = {}
    names = {  # key -> metric sample in /metrics
        "batch_size_sum": "batch_size_windows_sum",
        "batch_seconds_sum": "batch_duration_seconds_sum",
        "decode_seconds_sum": "decode_duration_seconds_sum",
        "decode_seconds_count": "decode_duration_seconds_count",
    }
    for name, sample in names.items():
        m = re.search(rf"^earmark_{sample} (\S+)$", text, re.MULTILINE)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def machine() -> str:
    from host import cpu_name

    cpu = cpu_name()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    import torch

    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} (CPU)"
    )


def report(levels: list[Level], info: dict[str, str], out: Path) -> str:
    rows = "\n".join(
        f"| {lv.concurrency} | {lv.throughput:.2f} | {lv.pct_ms(50):.0f} | {lv.pct_ms(95):.0f} | {lv.pct_ms(99):.0f} "
        f"| {len(lv.latencies_s)} | {sum(lv.errors.values())} | {lv.model_ms_per_window:.0f} | {lv.decode_ms:.0f} |"
        for lv in levels
    )
    lines = [
        f"## {info['title']}",
        "",
        f"Run {info['date']} by `python bench/bench_serve.py {info['argv']}`.",
        "",
        f"- Machine: {info['machine']}.",
        (
            f"- Load (`uptime` load averages 1/5/15 min): before {info['load_before']}, after {info['load_after']}."
            " Other jobs shared the machine; figures on a quiet one are better."
        ),
        (
            f"- Model: full-size `clap-htsat-fused` with random weights (`bench/fullsize.py`): speed and memory only;"
            f" its scores are meaningless. Server: {info['server']}."
        ),
        (
            f"- Requests: `POST /api/v1/classify`, 10 s mp3 (128 kbps, 48 kHz, 16 different clips), 5 labels;"
            f" a closed loop keeps N in flight for {info['seconds']} s after {info['warm']} s of warm-up."
        ),
        "",
        "| concurrency | requests/s | p50 ms | p95 ms | p99 ms | answered | errors | model ms/window | decode ms |",
        "|---|---|---|---|---|---|---|---|---|",
        rows,
        "",
        (
            f"Server memory: {info['start_kind']} start to ready {info['cold_s']} s; RSS idle {info['idle_rss']} MiB;"
            f" peak {info['peak_self']} MiB (server process), {info['peak_total']} MiB with its decode workers."
        ),
        "",
        info["floor"],
        "",
        "Against the targets:",
        "",
        info["verdict"],
        "",
    ]
    text = "\n".join(lines)
    if info["append"] and out.exists():
        out.write_text(out.read_text().rstrip("\n") + "\n\n" + text)
    else:
        out.write_text("# `earmark serve` under load\n\n" + text)
    return text


def floor_line(levels: list[Level], fl: dict[str, object]) -> str:
    """The figures as ratios to the machine's floor (``bench/floor.py``), comparable between machines."""
    floor_ms = float(fl["floor_ms"])  # type: ignore[arg-type]
    wps = 1000.0 / floor_ms
    parts = [
        f"Floor (same run, {fl['threads']} threads, load {fl['load']}): {floor_ms:.0f} ms per window,"
        f" {wps:.2f} windows/s"
    ]
    for lv in levels:
        parts.append(
            f"c={lv.concurrency}: {lv.throughput / wps:.2f}x the floor's windows/s,"
            f" p50 {lv.pct_ms(50) / floor_ms:.1f}x the floor's ms"
        )
    return "; ".join(parts) + "."


def verdict(levels: list[Level], peak_self_mib: float) -> str:
    by_c = {lv.concurrency: lv for lv in levels}
    parts = []
    if 16 in by_c:
        got = by_c[16].throughput
        ok = "met" if got >= TARGETS["throughput_c16"] else "missed"
        parts.append(f"- Throughput at concurrency 16: {got:.2f} requests/s (target ≥ 15): {ok}.")
    if 1 in by_c:
        got = by_c[1].pct_ms(99)
        ok = "met" if got <= TARGETS["p99_c1_ms"] else "missed"
        parts.append(f"- p99 at concurrency 1: {got:.0f} ms (target ≤ 150 ms): {ok}.")
    ok = "met" if peak_self_mib <= TARGETS["peak_rss_mib"] else "missed"
    parts.append(f"- Server peak RSS: {peak_self_mib:.0f} MiB (target ≤ 1024 MiB): {ok}.")
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: bench/fullsize.py's)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warm", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--threads", type=int, default=None, help="model threads (default: all cores)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-serve.md")
    ap.add_argument(
        "--setting",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="server setting for this run (repeatable)",
    )
    ap.add_argument("--append", action="store_true", help="add this run to --out instead of replacing it")
    ap.add_argument("--title", default="Default settings", help="heading of this run's section")
    ap.add_argument(
        "--prestart",
        action="store_true",
        help="start and stop the server once first, so the measured start finds the model cache warm "
        "(the ONNX export and backend choice made) as every start after the first does",
    )
    ap.add_argument(
        "--home",
        type=Path,
        default=None,
        help="EARMARK_HOME to serve from (e.g. bench/out/home, where the model is prepared); default a fresh one",
    )
    args = ap.parse_args()
    if args.model is None:
        from fullsize import build_fullsize

        args.model = build_fullsize()
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    from floor import floor

    fl = floor(args.model, os.cpu_count() or 1)  # the machine's floor, in the same run as the figures
    with tempfile.TemporaryDirectory(prefix="earmark-bench-") as tmp:
        home = args.home.resolve() if args.home else Path(tmp)
        clips = make_clips(Path(tmp))
        extra = [x for pair in args.setting for x in ("--setting", *pair)]
        if args.prestart:
            first, first_url, first_s = start_server(args.model, args.threads, home, extra)
            import httpx

            # the labels once, as a restarted server has already seen them (label_cache.py)
            httpx.post(
                first_url + "/api/v1/classify",
                files={"file": ("clip.mp3", clips[0])},
                data={"labels": LABELS},
                timeout=300,
            )
            first.send_signal(signal.SIGTERM)
            first.wait(60)
            print(f"first start (fills the model cache): {first_s:.1f} s", flush=True)
        proc, url, cold_s = start_server(args.model, args.threads, home, extra)
        sampler = RssSampler(proc.pid)
        time.sleep(1.0)
        idle_self, _ = sampler.now()
        levels = []
        try:
            for c in args.concurrency:
                levels.append(asyncio.run(run_level(url, clips, c, args.seconds, args.warm)))
                lv = levels[-1]
                print(
                    f"c={c}: {lv.throughput:.2f} req/s p50 {lv.pct_ms(50):.0f} p99 {lv.pct_ms(99):.0f} ms "
                    f"errors {lv.errors} model {lv.model_ms_per_window:.0f} ms/window",
                    flush=True,
                )
        finally:
            sampler.stop()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    mib = 1024**2
    info = {
        "title": args.title,
        "append": "yes" if args.append else "",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "argv": shlex.join(sys.argv[1:]),
        "machine": machine(),
        "load_before": load_before,
        "load_after": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "server": (
            f"settings {' '.join(extra) or 'default'}, page mounted,"
            f" model threads {args.threads or 'default (cores left after the decode workers)'}"
        ),
        "seconds": f"{args.seconds:g}",
        "warm": f"{args.warm:g}",
        "cold_s": f"{cold_s:.1f}",
        "start_kind": "warm-cache" if args.prestart else "cold",
        "idle_rss": f"{idle_self / mib:.0f}",
        "peak_self": f"{sampler.peak_self / mib:.0f}",
        "peak_total": f"{sampler.peak_total / mib:.0f}",
        "verdict": verdict(levels, sampler.peak_self / mib),
        "floor": floor_line(levels, fl),
    }
    print(report(levels, info, args.out))


if __name__ == "__main__":
    main()
