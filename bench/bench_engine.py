"""Engine benchmark: earmark's backends vs the plain transformers pipeline, side by side.

Covers issue 2 (earmark vs ``pipeline("zero-shot-audio-classification")`` on the
same 10 s clip with 5 and 50 labels: latency, clips/s on 100 mp3 files, peak
RSS, cold start) and issue 6 (per backend: warm latency with waveform and file
input, first call with 50 new labels, tagging throughput on 200 files via
``embed_many``, peak RSS, cold start; deviation from fp32). Every scenario runs
in its own process, so peak RSS and cold start are that scenario's alone.

The model is the full-size random-weight ``clap-htsat-fused`` of
``bench/fullsize.py``: speed and memory do not depend on weight values; its
scores mean nothing and are never reported. Not collected by pytest.

    python bench/bench_engine.py                      # everything; writes bench/RESULTS-engine.md
    python bench/bench_engine.py --backends onnx --no-pipeline --files 40   # a quick look
    python bench/bench_engine.py --only pipeline      # re-run one row (e.g. after a load spike)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

LABELS5 = ["dog barking", "siren", "glass breaking", "rain", "speech"]
_WORDS = (
    "engine horn bell whistle alarm drill hammer saw motor fan wind water rain thunder bird cat cow frog insect "
    "crowd baby laugh cough sneeze clap step door knock phone clock typing piano guitar drum violin trumpet "
    "choir train plane boat car truck bus siren gunshot explosion fire"
).split()
LABELS50 = [f"{a} and {b}" for a, b in zip(_WORDS, _WORDS[7:] + _WORDS[:7], strict=True)][:50]
THREADS = 2
WARM_RUNS = 20


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median_ms(fn: Any, runs: int = WARM_RUNS, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def make_files(n: int) -> list[Path]:
    """``n`` 10 s mp3 files of mixed synthetic sounds (made once with ffmpeg)."""
    from earmark import synth

    folder = OUT / "files10s"
    folder.mkdir(parents=True, exist_ok=True)
    kinds = list(synth.SOUNDS)
    files = []
    for i in range(n):
        f = folder / f"clip-{i:03d}.mp3"
        if not f.is_file():
            wave = synth.make(kinds[i % len(kinds)], 10.0, seed=i)
            cmd = [
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
            ]
            cmd += ["-i", "-", "-c:a", "libmp3lame", "-b:a", "128k", str(f)]
            subprocess.run(cmd, input=wave.tobytes(), check=True)
        files.append(f)
    return files


# ---------------------------------------------------------------- children (one scenario per process)


def child_earmark(args: argparse.Namespace) -> dict[str, Any]:
    from earmark import Classifier
    from earmark.audio import decode
    from earmark.stage import embed_many

    files = make_files(args.files)
    clf = Classifier(args.model, backend=args.backend, threads=THREADS)
    clf.classify(files[0], LABELS5)  # first result
    res: dict[str, Any] = {"cold_s": time.time() - args.t0, "backend": clf.backend.name}
    res["rss_after_first_mib"] = _rss_peak_mib()
    wave = decode(files[1], sample_rate=clf.sample_rate)
    res["warm_wave_ms"] = _median_ms(lambda: clf.classify(wave, LABELS5, input_rate=clf.sample_rate))
    res["warm_file_ms"] = _median_ms(lambda: clf.classify(files[2], LABELS5))
    t0 = time.perf_counter()
    clf.classify(wave, LABELS50, input_rate=clf.sample_rate)
    res["first50_ms"] = (time.perf_counter() - t0) * 1000.0
    t0 = time.perf_counter()
    clf.text_embeddings([f"{x}, again" for x in LABELS50], ("This is a sound of {label}.",))
    res["text50_ms"] = (time.perf_counter() - t0) * 1000.0
    res["warm50_ms"] = _median_ms(lambda: clf.classify(wave, LABELS50, input_rate=clf.sample_rate), runs=10)
    for n in sorted({100, args.files}):
        t0 = time.perf_counter()
        done = sum(1 for _src, emb in embed_many(clf, files[:n]) if clf.score(emb, LABELS5))  # type: ignore[arg-type]
        res[f"files{n}_per_s"] = done / (time.perf_counter() - t0)
    res["peak_rss_mib"] = _rss_peak_mib()
    return res


def child_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore")
    import numpy as np
    import torch
    from transformers import pipeline
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    torch.set_num_threads(THREADS)
    files = make_files(args.files)
    pipe = pipeline("zero-shot-audio-classification", model=str(args.model), device="cpu")
    pipe(str(files[0]), candidate_labels=LABELS5)
    res: dict[str, Any] = {"cold_s": time.time() - args.t0, "backend": "transformers pipeline"}
    res["rss_after_first_mib"] = _rss_peak_mib()
    from earmark.audio import decode

    wave = decode(files[1], sample_rate=48_000).astype(np.float64)
    res["warm_wave_ms"] = _median_ms(lambda: pipe(wave, candidate_labels=LABELS5))
    res["warm_file_ms"] = _median_ms(lambda: pipe(str(files[2]), candidate_labels=LABELS5))
    t0 = time.perf_counter()
    pipe(wave, candidate_labels=LABELS50)
    res["first50_ms"] = (time.perf_counter() - t0) * 1000.0
    res["warm50_ms"] = _median_ms(lambda: pipe(wave, candidate_labels=LABELS50), runs=5, warmup=1)
    n = min(100, args.files)
    t0 = time.perf_counter()
    for f in files[:n]:
        pipe(str(f), candidate_labels=LABELS5)
    res[f"files{n}_per_s"] = n / (time.perf_counter() - t0)
    res["peak_rss_mib"] = _rss_peak_mib()
    return res


def child_measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every backend's deviation from fp32 and speed, as ``earmark model info --measure`` records them."""
    from earmark.backends import artifacts, get_backend
    from earmark.models import canonical

    t0 = time.perf_counter()
    auto = get_backend("auto", model=args.model, threads=THREADS)
    first_use_s = time.perf_counter() - t0
    get_backend("onnx-int8", model=args.model, threads=THREADS)
    folder = artifacts.artifact_dir(Path(args.model).resolve(), canonical(args.model))
    return {"auto": auto.name, "first_use_s": first_use_s, "records": artifacts.read_records(folder)}


def child_profile(args: argparse.Namespace) -> dict[str, Any]:
    """Per-operator time of one warm window on the backend, from the runtime's own profiler."""
    from earmark.backends import artifacts, get_backend

    backend: Any = get_backend(args.backend, model=args.model, threads=THREADS)
    feats = backend.window_features(artifacts.probe_windows(backend.sample_rate, backend.window_samples)[:1])
    for _ in range(3):
        backend.embed_features(feats)
    if args.backend.startswith("onnx"):
        return {"ops": _ort_profile(backend, feats)}
    return {"ops": _torch_profile(backend, feats)}


def _ort_profile(backend: Any, feats: Any) -> list[tuple[str, float]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    model = backend.folder / ("audio-int8.onnx" if backend.name == "onnx-int8" else "audio.onnx")
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for _ in range(6):
        sess.run(None, {"input_features": feats})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1000.0 / 6
    return sorted(per_op.items(), key=lambda kv: -kv[1])[:12]


def _torch_profile(backend: Any, feats: Any) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            backend.embed_features(feats)
    rows = sorted(prof.key_averages(), key=lambda r: -r.self_cpu_time_total)[:12]
    return [(r.key, r.self_cpu_time_total / 1000.0 / 3) for r in rows]


def child_tagging(args: argparse.Namespace) -> dict[str, Any]:
    """Tagging loop alone (run under py-spy by the parent)."""
    from earmark import Classifier
    from earmark.stage import embed_many

    files = make_files(args.files)
    clf = Classifier(args.model, backend=args.backend, threads=THREADS)
    clf.classify(files[0], LABELS5)
    t0 = time.perf_counter()
    done = sum(1 for _src, emb in embed_many(clf, files) if clf.score(emb, LABELS5))  # type: ignore[arg-type]
    return {"files_per_s": done / (time.perf_counter() - t0), "backend": clf.backend.name}


CATEGORIES = (
    ("model", ("onnxruntime", "InferenceSession", "get_audio_features", "embed_features", "torch/nn")),
    ("features", ("_log_mel", "window_features", "scipy")),
    ("decode+resample", ("_stream_container", "resample", "av/", "iter_windows", "stream (earmark")),
    ("waiting", ("wait (threading", "get (queue", "put (queue", "_worker (concurrent", "acquire")),
)


def py_spy_profile(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    """Where the tagging loop's threads spend their samples (py-spy, native frames included)."""
    raw = Path(tempfile.mkdtemp()) / "tagging.txt"
    env = {**os.environ, "EARMARK_HOME": str(OUT / "home"), "HF_HUB_OFFLINE": "1"}
    cmd = [
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--format",
        "raw",
        "-r",
        "200",
        "--threads",
    ]
    cmd += [
        "--idle",
        "-o",
        str(raw),
        "--",
        sys.executable,
        __file__,
        "--child",
        "tagging",
        "--backend",
        backend,
    ]
    cmd += ["--model", str(args.model), "--files", str(min(args.files, 100))]
    subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    per_thread: dict[str, dict[str, int]] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread = stack.split(";", 1)[0]
        thread = "decode workers" if "earmark-decode" in thread or "ThreadPool" in thread else "main (model)"
        cat = next((name for name, keys in CATEGORIES if any(k in stack for k in keys)), "other python")
        bucket = per_thread.setdefault(thread, {})
        bucket[cat] = bucket.get(cat, 0) + int(count)
    return {
        t: {c: round(100 * n / sum(b.values()), 1) for c, n in sorted(b.items(), key=lambda kv: -kv[1])}
        for t, b in per_thread.items()
    }


CHILDREN = {
    "earmark": child_earmark,
    "pipeline": child_pipeline,
    "measure": child_measure,
    "profile": child_profile,
    "tagging": child_tagging,
}


# ---------------------------------------------------------------- parent


def run_child(
    kind: str, args: argparse.Namespace, *, backend: str = "auto", home: Path | None = None
) -> dict[str, Any]:
    env = {
        **os.environ,
        "EARMARK_HOME": str(home or OUT / "home"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [sys.executable, __file__, "--child", kind, "--backend", backend, "--model", str(args.model)]
    cmd += ["--files", str(args.files), "--t0", repr(time.time())]
    load_before = os.getloadavg()[0]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{kind}/{backend} failed:\n{run.stderr[-3000:]}")
    res = json.loads(run.stdout.strip().splitlines()[-1])
    res["load"] = (round(load_before, 2), round(os.getloadavg()[0], 2))
    print(f"{kind:8} {backend:10} {json.dumps(res)[:300]}", file=sys.stderr)
    return dict(res)


def machine() -> list[str]:
    lines = []
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    for line in lscpu:
        key = line.split(":")[0]
        if key in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache", "Hypervisor vendor"):
            lines.append(f"- {line.split(':')[0]}: {line.split(':', 1)[1].strip()}")
    flags = next((x for x in lscpu if x.startswith("Flags")), "")
    lines.append(
        "- bf16/VNNI flags: "
        + (", ".join(f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags) or "none")
    )
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    lines.append(f"- memory: {int(mem) // 1024} MiB; Python {platform.python_version()}")
    import numpy
    import onnxruntime
    import torch
    import transformers

    lines.append(
        f"- torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"numpy {numpy.__version__}; {THREADS} threads everywhere"
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model folder (default: $EARMARK_BENCH_MODEL or bench/fullsize.py's)",
    )
    ap.add_argument("--files", type=int, default=200, help="10 s mp3 files for throughput")
    ap.add_argument("--backends", default="torch,torch-bf16,onnx,onnx-int8,auto")
    ap.add_argument("--no-pipeline", action="store_true")
    ap.add_argument(
        "--only", default="", help="re-run these rows (e.g. pipeline,onnx), keep the rest of the last run"
    )
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-engine.md")
    ap.add_argument("--child", choices=list(CHILDREN))
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--t0", type=float, default=0.0)
    args = ap.parse_args()
    if args.model is None:
        from fullsize import build_fullsize

        args.model = (
            Path(os.environ["EARMARK_BENCH_MODEL"])
            if "EARMARK_BENCH_MODEL" in os.environ
            else build_fullsize()
        )
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    run_all(args)


def run_all(args: argparse.Namespace) -> None:
    """Every runner in its own process, then the results file. ``--only`` re-runs some rows."""
    make_files(args.files)
    saved = OUT / "bench_engine.json"
    old: dict[str, Any] = json.loads(saved.read_text()) if args.only and saved.is_file() else {}
    started = time.strftime("%Y-%m-%d %H:%M")
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if old:
        first, measured, profiles, spy = old["first"], old["measured"], old["profiles"], old["spy"]
        results = old["results"]
        for name in args.only.split(","):
            kind = "pipeline" if name == "pipeline" else "earmark"
            results[name] = run_child(kind, args, backend="auto" if kind == "pipeline" else name)
    else:
        first = run_child(
            "measure", args, home=Path(tempfile.mkdtemp())
        )  # fresh home: first use, export included
        measured = run_child("measure", args)  # the bench home: exports kept between runs
        results = {} if args.no_pipeline else {"pipeline": run_child("pipeline", args)}
        for name in args.backends.split(","):
            results[name] = run_child("earmark", args, backend=name)
        profiles = {name: run_child("profile", args, backend=name) for name in ("onnx", "torch-bf16")}
        spy = {name: py_spy_profile(args, name) for name in ("onnx", "torch-bf16")}
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    from engine_report import render

    text = render(
        started=started,
        machine=machine(),
        uptime=(uptime_before, uptime_after),
        results=results,
        measured=measured,
        first_use=first,
        profiles=profiles,
        spy=spy,
        files=args.files,
    )
    args.out.write_text(text)
    everything = {"results": results, "measured": measured, "first": first, "profiles": profiles, "spy": spy}
    saved.write_text(json.dumps(everything, indent=1))
    print(text)


if __name__ == "__main__":
    main()
