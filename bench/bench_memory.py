"""Where a server's memory goes, step by step, per backend (each in a fresh process).

    PYTHONPATH=src python bench/bench_memory.py [--backends openvino,onnx,onnx-int8]

Steps, RSS after each (MiB, from /proc/self/status): Python + earmark imports; the
server and page modules (FastAPI, Gradio); the backend with its audio tower; one
10 s window embedded; the text tower (5 labels embedded); the text tower released
(``release_text``); and VmHWM (peak). ``onnx-int8`` is the "int8 text tower"
alternative (its deviation is in ``earmark model info``). Uses the prepared model in
``bench/out/home``. Full-size random-weight model (``bench/fullsize.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "src"), str(HERE)]

from host import cpu_name, uptime  # noqa: E402


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(backend: str, model: str) -> dict[str, Any]:
    import numpy as np

    steps: dict[str, float] = {"python + earmark": _status("VmRSS")}
    import earmark.server.api  # noqa: F401

    try:
        import gradio  # noqa: F401

        import earmark.server.ui  # noqa: F401
    except ImportError:
        pass
    steps["+ server and page modules"] = _status("VmRSS")
    from earmark.backends import get_backend

    b: Any = get_backend(backend, model=model, threads=2)
    steps["+ backend (audio tower)"] = _status("VmRSS")
    b.embed_audio([np.zeros(480_000, np.float32) + 0.01])
    steps["+ one window embedded"] = _status("VmRSS")
    b.embed_text([f"This is a sound of {x}." for x in ("dog", "siren", "rain", "glass", "speech")])
    steps["+ text tower (5 labels)"] = _status("VmRSS")
    if hasattr(b, "release_text"):
        b.release_text(0)
        import gc

        gc.collect()
        steps["text tower released"] = _status("VmRSS")
    steps["peak (VmHWM)"] = _status("VmHWM")
    return {k: round(v) for k, v in steps.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="openvino,onnx,onnx-int8")
    ap.add_argument("--model", default=str(HERE / "out" / "clap-htsat-fused-random"))
    ap.add_argument("--child", default="")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model)))
        return
    env = {**os.environ, "EARMARK_HOME": str(HERE / "out" / "home"), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(ROOT / "src")
    print(f"# serving memory by step; {cpu_name()}; load before: `{uptime()}`\n")
    rows = {}
    for b in args.backends.split(","):
        run = subprocess.run(
            [sys.executable, __file__, "--child", b, "--model", args.model],
            capture_output=True,
            text=True,
            env=env,
        )
        if run.returncode != 0:
            print(f"{b} failed: {run.stderr[-1500:]}", file=sys.stderr)
            continue
        rows[b] = json.loads(run.stdout.strip().splitlines()[-1])
    steps = list(dict.fromkeys(k for r in rows.values() for k in r))
    print("| RSS, MiB | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for s in steps:
        print(f"| {s} | " + " | ".join(str(r.get(s, "—")) for r in rows.values()) + " |")
    print(f"\nload after: `{uptime()}`")


if __name__ == "__main__":
    main()
