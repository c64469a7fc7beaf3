"""One-time preparation of a model for this CPU: export, convert, measure, choose.

``auto`` on a CPU needs, once per model and CPU: the PyTorch fp32 reference
embeddings, the ONNX export, the OpenVINO conversion and a measurement of the
exact backends (:func:`earmark.backends.select.measure`). :func:`prepare` does
all of it in this process (``earmark model prepare [NAME]``, run ahead by
``make serve`` and the container image); :func:`prepare_in_child` does it in a
child process (``python -m earmark.backends.prepare``) the first time ``auto``
meets a model, so the process that then serves never imports PyTorch unless
PyTorch is the choice. Either way it is announced on stderr and in the log
("preparing NAME for this CPU (once, about N s)…") with a line per step.
A thread count alone never prepares again: ``auto`` uses the nearest measured
thread count on the same CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import models, paths
from ..errors import EarmarkError, ModelError
from . import artifacts

__all__ = ["announce", "estimate_s", "prepare", "prepare_in_child"]

log = logging.getLogger("earmark")

PREFIX = "earmark: "
# first-run estimate before anything was measured here: seconds plus seconds per MB of weights
BASE_S = 20.0
S_PER_MB = 0.12


def announce(line: str) -> None:
    """A preparation line on stderr (also without a terminal) and in the log."""
    print(PREFIX + line, file=sys.stderr, flush=True)
    log.info("%s", line)


def _weights_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6


def _timing_file() -> Path:
    return paths.earmark_home() / "cache" / "prepare-times.json"


def estimate_s(path: Path) -> int:
    """About how long preparing the model at ``path`` takes here (from the last preparation)."""
    mb = _weights_mb(path)
    try:
        last = json.loads(_timing_file().read_text())
        per_mb, base = float(last["s_per_mb"]), float(last["base_s"])
    except (OSError, ValueError, KeyError, TypeError):
        per_mb, base = S_PER_MB, BASE_S
    return int(max(5, round((base + per_mb * mb) / 5) * 5))


def _remember_time(path: Path, seconds: float) -> None:
    mb = max(_weights_mb(path), 1.0)
    data = {"s_per_mb": max(0.0, (seconds - BASE_S / 2) / mb), "base_s": BASE_S / 2}
    file = _timing_file()
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, file)


def _default_threads() -> list[int]:
    cores = os.cpu_count() or 1
    return sorted({1, cores})


def prepare(
    model: str | None = None,
    *,
    threads: Sequence[int] | None = None,
    progress: Callable[[str], None] = announce,
) -> dict[str, Any]:
    """Export, convert and measure ``model`` here; remember the ``auto`` choice per thread count.

    Args:
        model: alias, hub id or folder.
        threads: thread counts to measure (default 1 and all cores).
        progress: called with one line per step.

    Returns:
        The choices made, by machine signature (see :func:`artifacts.read_records`).
    """
    from . import select
    from .clap import ClapBackend
    from .export import export_onnx
    from .onnx import OnnxBackend

    counts = list(threads or _default_threads())
    path = models.resolve(model)
    model_id = models.canonical(str(model or os.environ.get("EARMARK_MODEL") or models.DEFAULT_MODEL))
    folder = artifacts.artifact_dir(path, model_id)
    precision = select.asked_precision()
    t0 = time.perf_counter()
    steps = 4
    progress(f"step 1/{steps}: loading {model_id} in PyTorch (the exact reference)")
    ref = ClapBackend(model, device="cpu", threads=counts[0])
    if not (folder / "meta.json").is_file():
        progress(f"step 2/{steps}: exporting to ONNX")
        export_onnx(ref, folder)
    else:
        progress(f"step 2/{steps}: ONNX export already here")
    reference = artifacts.load_reference(folder)
    if reference is None:
        reference = artifacts.reference_embeddings(ref)
        artifacts.save_reference(folder, reference)
    progress(f"step 3/{steps}: converting to OpenVINO")
    have_openvino = True
    try:
        from .openvino import convert

        convert(folder)
    except EarmarkError as ex:
        have_openvino = False
        progress(f"OpenVINO not measured: {ex}")
    import torch

    made: dict[str, Any] = {}
    deviations: dict[str, artifacts.Deviation] = {}
    for n in counts:
        torch.set_num_threads(n)
        progress(f"step 4/{steps}: measuring backends at {n} thread{'s' if n > 1 else ''}")
        candidates: dict[str, Any] = {"torch": ref}
        try:
            candidates["onnx"] = OnnxBackend(model, threads=n)
        except EarmarkError as ex:
            progress(f"onnx not measured: {ex}")
        if have_openvino:
            from .openvino import OpenVinoBackend

            # as tag, serve and eval run it: two streams on 2+ threads (a lone clip takes one)
            candidates["openvino"] = OpenVinoBackend(model, threads=n, throughput=True)
            if precision == "bf16":
                candidates["openvino-bf16"] = OpenVinoBackend(
                    model, threads=n, precision="bf16", throughput=True
                )
        if precision == "int8":
            candidates["onnx-int8"] = OnnxBackend(model, threads=n, int8=True)
        timings, conditions = select.measure(candidates, progress=progress)
        for name, b in candidates.items():  # once: a thread count does not change the numbers
            if name not in deviations:
                deviations[name] = artifacts.deviation(b, reference)
        sig = artifacts.machine_signature(n)
        for name in candidates:
            artifacts.record_backend(folder, name, deviations[name], timings[name], n, conditions.to_dict())
        previous = artifacts.read_records(folder)["choices"].get(sig, {})
        incumbent = previous.get("backend") if previous.get("cpu") else None
        measured = {name: deviations[name] for name in candidates}
        best = select.pick(timings, measured, incumbent=incumbent, precision=precision)
        made[sig] = _remember(folder, sig, n, best, timings, conditions)
        shown = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(timings.items(), key=lambda kv: kv[1]))
        progress(f"{n} thread{'s' if n > 1 else ''}: auto backend {best} ({shown} per 10 s window)")
        del candidates
    took = time.perf_counter() - t0
    _remember_time(path, took)
    progress(f"{model_id} prepared in {took:.0f} s")
    return made


def _remember(
    folder: Path, sig: str, threads: int, best: str, timings: dict[str, float], conditions: Any
) -> dict[str, Any]:
    choice = {
        "backend": best,
        "cpu": artifacts.cpu_signature(),
        "threads": threads,
        "ms_per_window": {n: round(t, 2) for n, t in timings.items()},
        "conditions": conditions.to_dict(),
    }

    def change(data: dict[str, Any]) -> None:
        data["choices"][sig] = choice

    artifacts.update_records(folder, change)
    return choice


def prepare_in_child(model: str | None, threads: int | None) -> None:
    """Prepare ``model`` in a child process, relaying its progress; failures are logged, not raised."""
    path = models.resolve(model)
    model_id = models.canonical(str(model or os.environ.get("EARMARK_MODEL") or models.DEFAULT_MODEL))
    announce(f"preparing {model_id} for this CPU (once, about {estimate_s(path)} s)…")
    src = str(Path(__file__).resolve().parents[2])  # the earmark this process runs, for the child too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "earmark.backends.prepare", "--threads", str(threads or os.cpu_count() or 1)]
    if model:
        cmd += ["--model", str(model)]
    t0 = time.perf_counter()
    tail: list[str] = []
    with subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            if line.startswith(PREFIX):
                announce("  " + line[len(PREFIX) :])
            elif line:
                tail = [*tail[-9:], line]
        rc = proc.wait()
    if rc != 0:
        log.warning("preparing %s failed (exit %s): %s", model_id, rc, " | ".join(tail[-3:]))
        return
    log.debug("prepared %s in %.1f s", model_id, time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m earmark.backends.prepare``: what :func:`prepare_in_child` runs."""
    ap = argparse.ArgumentParser(prog="python -m earmark.backends.prepare")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, action="append", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        prepare(
            args.model,
            threads=args.threads,
            progress=lambda s: print(PREFIX + s, file=sys.stderr, flush=True),
        )
    except (EarmarkError, ModelError) as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
