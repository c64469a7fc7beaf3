"""136 simultaneous uploads to `earmark serve`: how fast do the excess ones get 429? Appends to bench/RESULTS.md.

Issue 16 measured 136 simultaneous uploads to a server holding 34 requests
(the default `decode_workers` 2 + `max_queue` 32): 102 got 429, but only after
2.4-6.1 s, each having been read and parsed first. The admission middleware
(`earmark.server.admission`) now answers from the headers. This starts a real
server (uvicorn on 127.0.0.1, the tiny test model, default settings, no page),
sends N uploads of a 30 s mp3 at once from an asyncio client that reads the answer
while still sending (as curl does), and records each answer's status and latency:
from the request's first byte to the answer's status line.

    python bench/bench_overload.py [--uploads 136] [--rounds 3] [--write]

Latencies on a busy shared 2-core machine are upper bounds: the client and the
server share the cores. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

sys.path.insert(0, str(ROOT / "tests"))
TINY = ROOT / "tests" / "assets" / "tiny-clap"

from helpers import encode, multipart_upload, send_reading  # noqa: E402 - after the paths above


def make_upload(folder: Path) -> bytes:
    """A 30 s mp3 (128 kbps): about 480 KB, enough that reading a body is not free."""
    from earmark import synth

    return encode(
        synth.make("hum", 30.0, seed=1), folder / "hum.mp3", extra=["-c:a", "libmp3lame", "-b:a", "128k"]
    ).read_bytes()


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ, EARMARK_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "earmark", "serve", "--model", str(TINY), "--port", "0", "--no-ui"]
    proc = subprocess.Popen(
        [*cmd, "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            m = re.search(r"at (http://127\.0\.0\.1:\d+)/", raw.decode(errors="replace"))
            if m and not found:
                found.append(m.group(1))
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120):
        proc.kill()
        raise RuntimeError("earmark serve did not start")
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(found[0] + "/readyz", timeout=2).status_code == 200:
                return proc, found[0]
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("earmark serve never became ready")


async def one_upload(
    host: str, port: int, head: bytes, body: bytes, gate: asyncio.Event
) -> tuple[int, float]:
    """Send one upload and read the answer while still sending: (status, seconds to the status line)."""
    reader, writer = await asyncio.open_connection(host, port)
    await gate.wait()
    try:
        line, took = await send_reading(reader, writer, head, body, turns=True)  # latencies are the server's
        status = int(line.split()[1]) if line.startswith(b"HTTP/") else -1
        if status == -1:
            print(f"upload got no answer: {line[:80]!r}", file=sys.stderr)
    except (OSError, IndexError, ValueError) as ex:
        print(f"upload failed: {type(ex).__name__}: {ex}", file=sys.stderr)
        status, took = -1, float("nan")
    writer.close()
    return status, took


async def burst(url: str, clip: bytes, n: int) -> list[tuple[int, float]]:
    """``n`` uploads sent at once; (status, seconds to the answer) each."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head, body = multipart_upload({"labels": "hum, beep"}, "hum.mp3", clip, host="bench")
    gate = asyncio.Event()
    tasks = [
        asyncio.create_task(one_upload(parts.hostname or "", parts.port or 0, head, body, gate))
        for _ in range(n)
    ]
    await asyncio.sleep(0.5)  # every connection open first: then all requests start together
    gate.set()
    return list(await asyncio.gather(*tasks))


def summary(results: list[tuple[int, float]]) -> dict[str, Any]:
    busy = sorted(t for s, t in results if s == 429)
    done = sorted(t for s, t in results if s == 200)
    q = statistics.quantiles(busy, n=10) if len(busy) >= 2 else [float("nan")] * 9
    return {
        "n429": len(busy),
        "n200": len(done),
        "other": len(results) - len(busy) - len(done),
        "other_codes": " ".join(sorted({str(st) for st, _ in results if st not in (200, 429)})) or "-",
        "p50_429_ms": 1000 * statistics.median(busy) if busy else float("nan"),
        "p90_429_ms": 1000 * q[8],
        "max_429_ms": 1000 * max(busy) if busy else float("nan"),
        "p50_200_ms": 1000 * statistics.median(done) if done else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=136)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    from host import cpu_name, uptime

    load_before = uptime()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_upload(Path(tmp))
        proc, url = start_server(Path(tmp))
        try:
            rows, every = [], []
            for _ in range(args.rounds):
                results = asyncio.run(burst(url, clip, args.uploads))
                rows.append(summary(results))
                every.extend(results)
                time.sleep(2)
        finally:
            proc.terminate()
            proc.wait(60)
    lines = [
        "",
        f"### Overload: {args.uploads} simultaneous 30 s mp3 uploads ({len(clip) // 1000} KB), capacity 34 (issue 16)",
        "",
        f"`bench/bench_overload.py`, tiny model, default settings, {cpu_name()}, {os.cpu_count()} cores.",
        f"Load before: `{load_before}`; after: `{uptime()}`. The machine was shared with other work:",
        "absolute times are upper bounds; compare the 429 and 200 columns of one round.",
        "",
        "| round | 429 | 200 | other (status) | 429 median ms | 429 p90 ms | 429 max ms | 200 median ms | 429 / 200 median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in [*enumerate(rows, 1), ("all", summary(every))]:
        ratio = r["p50_429_ms"] / r["p50_200_ms"] if r["p50_200_ms"] else float("nan")
        lines.append(
            f"| {i} | {r['n429']:.0f} | {r['n200']:.0f} | {r['other']:.0f} ({r['other_codes']}) | {r['p50_429_ms']:.0f} | "
            f"{r['p90_429_ms']:.0f} | {r['max_429_ms']:.0f} | {r['p50_200_ms']:.0f} | {ratio:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
