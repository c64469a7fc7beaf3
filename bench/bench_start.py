"""Where `earmark serve`'s start goes, step by step: seconds and RSS, with and without the page.

    PYTHONPATH=src python bench/bench_start.py [--backends openvino,onnx] [--repeats 3]

Each measurement is a fresh process that does what ``earmark serve`` does before it
answers, in order, and records the seconds and RSS after each step: import the CLI;
import the REST server (FastAPI); import the page modules (Gradio, ``earmark.server.ui``;
skipped for ``--no-ui``); build the classifier (backend with its audio tower, on the
model prepared in ``bench/out/home``); build the app (``create_app``, the page's
Blocks); classify one 10 s window against 5 labels the label cache knows (no text
tower). Variants (backend x page on/off) run interleaved ``--repeats`` times;
medians are printed, with the load before and after. Full-size random-weight model
(``bench/fullsize.py``); absolute seconds under load are upper bounds, the shares
are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "src"), str(HERE)]

from host import cpu_name, uptime  # noqa: E402

LABELS = ["dog barking", "glass breaking", "smoke alarm", "footsteps", "silence"]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(backend: str, model: str, ui: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    steps: list[tuple[str, float, float]] = []

    def mark(name: str) -> None:
        steps.append((name, time.perf_counter() - t0, _rss_mib()))

    import earmark.cli  # noqa: F401

    mark("import the CLI")
    from earmark.server.api import create_app

    mark("import the REST server")
    if ui:
        import earmark.server.ui  # noqa: F401  (imports Gradio the way the server does)

        mark("import the page (Gradio)")
    import numpy as np

    from earmark import Classifier

    clf = Classifier(model, backend=backend, threads=os.cpu_count() or 1)
    mark("build the classifier")
    import tempfile

    from earmark.store import Database

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(clf, db=Database(Path(tmp) / "x.db"), ui=ui, model_load_s=0.0)
        mark("build the app")
        rng = np.random.default_rng(0)
        wave = rng.standard_normal(clf.sample_rate * 10).astype(np.float32) * 0.1
        clf.classify(wave, LABELS, input_rate=clf.sample_rate)
        mark("first classify (known labels)")
        del app
    return {"steps": steps, "torch": "torch" in sys.modules, "text_loaded": _text_loaded(clf)}


def _text_loaded(clf: Any) -> bool | None:
    loaded = getattr(clf.backend, "text_loaded", None)
    return bool(loaded) if loaded is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="openvino,onnx")
    ap.add_argument("--model", default=str(HERE / "out" / "clap-htsat-fused-random"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", default="")
    ap.add_argument("--no-ui", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, not args.no_ui)))
        return
    env = {**os.environ, "EARMARK_HOME": str(HERE / "out" / "home"), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(ROOT / "src")
    variants = [(b, ui) for b in args.backends.split(",") for ui in (True, False)]
    before = uptime()
    runs: dict[tuple[str, bool], list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for b, ui in variants if r % 2 == 0 else variants[::-1]:
            cmd = [sys.executable, __file__, "--child", b, "--model", args.model] + (
                [] if ui else ["--no-ui"]
            )
            t0 = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            if run.returncode != 0:
                raise SystemExit(f"{b} failed: {run.stderr[-2000:]}")
            res = json.loads(run.stdout.strip().splitlines()[-1])
            res["wall"] = wall
            runs[(b, ui)].append(res)
            print(f"round {r + 1} {b} ui={ui}: {wall:.1f} s", file=sys.stderr, flush=True)
    print(f"### `earmark serve` start by step; {cpu_name()}, {os.cpu_count()} cores\n")
    print(f"Load before: `{before}`; after: `{uptime()}`. Medians of {args.repeats} interleaved runs.\n")
    for (b, ui), rs in runs.items():
        names = [s[0] for s in rs[0]["steps"]]
        at = {n: statistics.median(r["steps"][i][1] for r in rs) for i, n in enumerate(names)}
        rss = {n: statistics.median(r["steps"][i][2] for r in rs) for i, n in enumerate(names)}
        wall = statistics.median(r["wall"] for r in rs)
        total = at[names[-1]]
        print(f"{b}, page {'on' if ui else 'off'}: {wall:.1f} s process wall (interpreter start included);")
        print(f"torch imported: {rs[0]['torch']}; text tower loaded: {rs[0]['text_loaded']}\n")
        print("| step | s | share | RSS MiB |")
        print("|---|---|---|---|")
        prev = 0.0
        for n in names:
            print(f"| {n} | +{at[n] - prev:.2f} | {(at[n] - prev) / total:.0%} | {rss[n]:.0f} |")
            prev = at[n]
        print()


if __name__ == "__main__":
    main()
