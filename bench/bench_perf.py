"""Issue 17 side by side in one run: each figure as a ratio to the machine's floor and to the pipeline.

    PYTHONPATH=src python bench/bench_perf.py [--files 200] [--backends openvino,onnx,torch]

In one run, each scenario in its own process (so RSS and start-up are its own),
on the full-size random-weight ``clap-htsat-fused`` (``bench/fullsize.py``; speed
does not depend on weight values; scores mean nothing and are never reported):

- the floor (``bench/floor.py``): audio-encoder FLOPs / fp32 matmul peak on the same threads;
- the transformers pipeline and each earmark backend: warm 10 s clip (waveform, and
  the mp3 file), 50 new labels (text side), and for earmark ``earmark tag DIR`` and
  ``earmark classify DIR`` on ``--files`` 10 s mp3s (files/s after start-up: a run on
  one file is subtracted);
- for earmark ``earmark serve`` (page on, prepared model, labels known) at each
  ``--serve-threads`` count: start to ready, idle and peak RSS, requests/s and p99 at
  concurrency 1 and 16 (``bench/bench_serve.py``'s client);
- the load average before and after every scenario.

Prints a Markdown section (append it to bench/RESULTS.md by hand, with the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path[:0] = [str(ROOT / "src"), str(HERE)]

from bench_engine import LABELS5, LABELS50, make_files  # noqa: E402
from host import uptime  # noqa: E402

THREADS = os.cpu_count() or 1
RUNS = 7


def _median_ms(fn: Any, runs: int = RUNS, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def child_floor(args: argparse.Namespace) -> dict[str, Any]:
    from floor import floor

    return floor(args.model, THREADS)


def child_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore")
    import numpy as np
    import torch
    from transformers import pipeline
    from transformers.utils import logging as tlog

    from earmark.audio import decode

    tlog.set_verbosity_error()
    torch.set_num_threads(THREADS)
    files = make_files(3)
    pipe = pipeline("zero-shot-audio-classification", model=str(args.model), device="cpu")
    wave = decode(files[1], sample_rate=48_000).astype(np.float64)
    res: dict[str, Any] = {"warm_wave_ms": _median_ms(lambda: pipe(wave, candidate_labels=LABELS5))}
    res["warm_mp3_ms"] = _median_ms(lambda: pipe(str(files[2]), candidate_labels=LABELS5))
    tok = pipe.tokenizer([f"This is a sound of {x}." for x in LABELS50], padding=True, return_tensors="pt")
    with torch.no_grad():
        res["labels50_ms"] = _median_ms(lambda: pipe.model.get_text_features(**tok), runs=3, warmup=1)
    return res


def child_earmark(args: argparse.Namespace) -> dict[str, Any]:
    from earmark import Classifier
    from earmark.audio import decode

    files = make_files(3)
    clf = Classifier(args.model, backend=args.backend, threads=THREADS, persist_labels=False)
    wave = decode(files[1], sample_rate=clf.sample_rate)
    res: dict[str, Any] = {"backend": clf.backend.name}
    res["warm_wave_ms"] = _median_ms(lambda: clf.classify(wave, LABELS5, input_rate=clf.sample_rate))
    res["warm_mp3_ms"] = _median_ms(lambda: clf.classify(files[2], LABELS5))
    batches = [[f"{x} #{r}" for x in LABELS50] for r in range(4)]  # new labels every time
    res["labels50_ms"] = _median_ms(
        lambda: clf.text_embeddings(batches.pop(), ("This is a sound of {label}.",)), runs=3, warmup=1
    )
    return res


def cli_files_per_s(args: argparse.Namespace, command: str, backend: str) -> dict[str, Any]:
    """``earmark tag|classify DIR`` on N files, minus a run on one file (start-up, model load)."""
    files = make_files(args.files)
    env = {
        **os.environ,
        "EARMARK_HOME": str(OUT / "home"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    env["EARMARK_BACKEND"] = backend

    def run(n: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "in"
            d.mkdir()
            for f in files[:n]:
                shutil.copy(f, d / f.name)  # tag skips symlinks
            cmd = [
                sys.executable,
                "-m",
                "earmark",
                command,
                str(d),
                "-m",
                str(args.model),
                "-l",
                ",".join(LABELS5),
            ]
            cmd += ["--threads", str(THREADS)]
            if command == "tag":
                cmd += ["--db", str(Path(tmp) / "lib.db")]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            took = time.perf_counter() - t0
            if done.returncode not in (0, 1):
                raise SystemExit(f"{command} failed: {done.stderr[-2000:]}")
            return took

    load0 = os.getloadavg()[0]
    one = run(1)
    many = run(args.files)
    return {
        "files_per_s": round((args.files - 1) / max(many - one, 1e-6), 2),
        "start_s": round(one, 1),
        "load": (round(load0, 2), round(os.getloadavg()[0], 2)),
    }


def serve_row(args: argparse.Namespace, backend: str, threads: int | None) -> dict[str, Any]:
    """``earmark serve`` with the page on a prepared model: start to ready, idle/peak RSS, c=1 and c=16."""
    import asyncio
    import signal

    import bench_serve as bs

    os.environ["EARMARK_BACKEND"] = backend  # the server reads it like --backend
    load0 = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="earmark-perf-") as tmp:
            clips = bs.make_clips(Path(tmp))
            proc, url, start_s = bs.start_server(args.model, threads, OUT / "home", [])
            sampler = bs.RssSampler(proc.pid)
            try:
                time.sleep(1.0)
                idle, _ = sampler.now()
                levels = {
                    c: asyncio.run(bs.run_level(url, clips, c, args.serve_seconds, 2.0)) for c in (1, 16)
                }
            finally:
                sampler.stop()
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    finally:
        os.environ.pop("EARMARK_BACKEND", None)
    mib = 1024**2
    said = re.search(r"\(([\w-]+), (\d+) model threads?\)", getattr(proc, "announcement", ""))
    return {
        "threads": threads or "default",
        "chosen": f"{said.group(1)}, {said.group(2)} thread{'s' * (said.group(2) != '1')}" if said else "",
        "start_s": round(start_s, 1),
        "idle_mib": round(idle / mib),
        "peak_mib": round(sampler.peak_self / mib),
        "peak_with_workers_mib": round(sampler.peak_total / mib),
        **{f"c{c}_rps": round(lv.throughput, 2) for c, lv in levels.items()},
        **{f"c{c}_p99_ms": round(lv.pct_ms(99)) for c, lv in levels.items()},
        **{f"c{c}_errors": sum(lv.errors.values()) for c, lv in levels.items()},
        "load": (round(load0, 2), round(os.getloadavg()[0], 2)),
    }


CHILDREN = {"floor": child_floor, "pipeline": child_pipeline, "earmark": child_earmark}


def run_child(kind: str, args: argparse.Namespace, backend: str = "") -> dict[str, Any]:
    env = {
        **os.environ,
        "EARMARK_HOME": str(OUT / "home"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--backend",
        backend or "auto",
        "--model",
        str(args.model),
    ]
    load0 = os.getloadavg()[0]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{kind}/{backend} failed:\n{run.stderr[-3000:]}")
    res: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    res["load"] = (round(load0, 2), round(os.getloadavg()[0], 2))
    print(f"{kind} {backend}: {json.dumps(res)}", file=sys.stderr, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--backends", default="openvino,onnx,torch")
    ap.add_argument("--child", choices=list(CHILDREN))
    ap.add_argument("--backend", default="auto")
    ap.add_argument(
        "--serve-threads",
        default=f"default,1,{THREADS}",
        help="model threads of the `earmark serve` rows, comma-separated; 'default' passes no --threads"
        " ('' skips serving)",
    )
    ap.add_argument("--serve-seconds", type=float, default=12.0, help="measured seconds per concurrency")
    args = ap.parse_args()
    if args.model is None:
        from fullsize import build_fullsize

        args.model = build_fullsize()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    if not shutil.which("ffmpeg"):
        raise SystemExit("ffmpeg is needed to make the mp3 files")
    before = uptime()
    fl = run_child("floor", args)
    pipe = run_child("pipeline", args)
    rows: dict[str, dict[str, Any]] = {}
    for b in args.backends.split(","):
        rows[b] = run_child("earmark", args, b)
        rows[b]["tag"] = cli_files_per_s(args, "tag", b)
        rows[b]["classify"] = cli_files_per_s(args, "classify", b)
        rows[b]["serve"] = [
            serve_row(args, b, None if t == "default" else int(t)) for t in args.serve_threads.split(",") if t
        ]
        print(f"{b}: {json.dumps(rows[b])}", file=sys.stderr, flush=True)
    after = uptime()
    print(report(fl, pipe, rows, args.files, before, after))


def report(
    fl: dict[str, Any],
    pipe: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    files: int,
    before: str,
    after: str,
) -> str:
    floor_ms = float(fl["floor_ms"])
    floor_wps = 1000.0 / floor_ms
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {fl['cpu']} ({fl['flags']}), {THREADS} threads",
        "",
        f"Load before: `{before}`; after: `{after}`.",
        f"Floor: fp32 matmul peak {fl['fp32_gflops']} GFLOP/s (best of {fl.get('fp32_gflops_by_library')};"
        f" bf16 {fl['bf16_gflops']}), audio tower"
        f" {fl['audio_gflops_per_window']} GFLOP per window -> **{floor_ms:.0f} ms per window**"
        f" ({floor_wps:.2f} windows/s); load {fl['load']}.",
        "",
        "| figure | pipeline | " + " | ".join(rows) + " |",
        "|---|---|" + "---|" * len(rows),
    ]

    def ms_row(name: str, key: str, with_floor: bool = True) -> str:
        cells = [f"{pipe[key]:.0f} ms" + (f" ({pipe[key] / floor_ms:.1f}x floor)" if with_floor else "")]
        for r in rows.values():
            cell = f"{r[key]:.0f} ms"
            if with_floor:
                cell += f" ({r[key] / floor_ms:.1f}x floor)"
            cell += f", {pipe[key] / r[key]:.1f}x faster than pipeline"
            cells.append(cell)
        return f"| {name} | " + " | ".join(cells) + " |"

    lines.append(ms_row("warm 10 s clip, waveform", "warm_wave_ms"))
    lines.append(ms_row("warm 10 s clip, mp3 file", "warm_mp3_ms"))
    lines.append(ms_row("50 new labels (text side)", "labels50_ms", with_floor=False))
    for cmd in ("tag", "classify"):
        cells = ["—"]
        for r in rows.values():
            x = r[cmd]
            cells.append(
                f"{x['files_per_s']:.2f} files/s ({x['files_per_s'] / floor_wps:.2f}x the floor's windows/s;"
                f" start {x['start_s']} s; load {x['load'][0]}->{x['load'][1]})"
            )
        lines.append(f"| `earmark {cmd} DIR`, {files} 10 s mp3 | " + " | ".join(cells) + " |")
    for i, t in enumerate(dict.fromkeys(x["threads"] for r in rows.values() for x in r.get("serve", []))):
        cells = {"start": [], "rss": [], "c1": [], "c16": []}
        for r in rows.values():
            x = r["serve"][i] if i < len(r.get("serve", [])) else None
            if x is None:
                for v in cells.values():
                    v.append("—")
                continue
            errs = x["c1_errors"] + x["c16_errors"]
            cells["start"].append(f"{x['start_s']} s (load {x['load'][0]}->{x['load'][1]})")
            cells["rss"].append(
                f"{x['idle_mib']} / {x['peak_mib']} MiB ({x['peak_with_workers_mib']} with decode workers)"
            )
            cells["c1"].append(
                f"{x['c1_rps']:.2f} req/s, p99 {x['c1_p99_ms']} ms" + (f", {errs} errors" if errs else "")
            )
            cells["c16"].append(
                f"{x['c16_rps']:.2f} req/s ({x['c16_rps'] / floor_wps:.2f}x the floor's windows/s), p99 {x['c16_p99_ms']} ms"
            )
        label = f"serve --threads {t}" if t != "default" else "serve, default threads"
        if t == "default":
            chosen = [x["chosen"] for r in rows.values() for x in r.get("serve", []) if x["threads"] == t]
            label += f" ({'; '.join(c for c in chosen if c)})"
        lines.append(f"| {label}: start to ready, prepared model | — | " + " | ".join(cells["start"]) + " |")
        lines.append(f"| {label}: RSS idle / peak, page on | — | " + " | ".join(cells["rss"]) + " |")
        lines.append(f"| {label}: c=1 | — | " + " | ".join(cells["c1"]) + " |")
        lines.append(f"| {label}: c=16 | — | " + " | ".join(cells["c16"]) + " |")
    lines.append(
        "| load during the row (1-min, before->after) | "
        + f"{pipe['load'][0]}->{pipe['load'][1]} | "
        + " | ".join(f"{r['load'][0]}->{r['load'][1]}" for r in rows.values())
        + " |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
