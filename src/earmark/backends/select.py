"""``auto``: pick the fastest backend on this machine by measuring it, once.

On a CUDA GPU the answer is PyTorch fp16. On a CPU, the first use of a model
loads it in PyTorch fp32 (the exact reference), exports it to ONNX, and times
one 10 s window on each candidate: PyTorch fp32, PyTorch bf16 autocast (only on
CPUs with native bf16) and ONNX Runtime fp32. Each candidate's deviation from
fp32 on fixed probe windows and texts is measured too. The fastest exact
candidate (max diff <= 1e-4) wins, unless a near-exact one (cosine >= 0.9999
for audio and text) is at least ``NEAR_EXACT_GAIN`` times faster. int8 is
never chosen automatically.

The choice is remembered per machine (CPU model, threads) in the model's cache
folder, so later runs load only the chosen backend; delete ``records.json``
there (or set ``EARMARK_BACKEND``) to change it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .. import models
from . import Backend, artifacts, get_backend

__all__ = ["NEAR_EXACT_COSINE", "NEAR_EXACT_GAIN", "auto_backend", "choose"]

log = logging.getLogger("earmark")

NEAR_EXACT_COSINE = 0.9999
NEAR_EXACT_GAIN = 1.2
REPEATS = 7


def auto_backend(
    model: str | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    batch_size: int = 8,
) -> Backend:
    """The remembered (or freshly measured) fastest backend for ``model`` here.

    Args:
        model: alias, hub id or folder.
        device: ``auto``, ``cpu``, ``cuda``...; a GPU always means PyTorch.
        threads: CPU threads; part of the machine signature.
        batch_size: most windows per forward pass.
    """
    kwargs: dict[str, Any] = {"model": model, "device": device, "threads": threads, "batch_size": batch_size}
    if _wants_gpu(device):
        return get_backend("torch", **kwargs)
    path = models.resolve(model)
    model_id = models.requested(model)
    folder = artifacts.artifact_dir(path, model_id)
    sig = artifacts.machine_signature(threads)
    remembered = artifacts.read_records(folder)["choices"].get(sig, {}).get("backend")
    if remembered in _cpu_candidates():
        log.debug("auto backend for %s: %s (remembered)", model_id, remembered)
        return get_backend(remembered, **kwargs)
    return choose(folder, sig, kwargs)


def _wants_gpu(device: str | None) -> bool:
    want = (device or os.environ.get("EARMARK_DEVICE") or "auto").lower()
    if want.startswith("cuda"):
        return True
    if want != "auto" or not _nvidia_driver():
        return False  # no driver: no need to import torch just to ask
    import torch

    return bool(torch.cuda.is_available())


def _nvidia_driver() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def _cpu_candidates() -> tuple[str, ...]:
    return ("torch", "torch-bf16", "onnx")


def choose(folder: Path, sig: str, kwargs: dict[str, Any]) -> Backend:
    """Measure the CPU candidates, remember the winner for ``sig``, return it."""
    from .clap import ClapBackend, bf16_supported

    log.info("measuring backends for %s on this machine (once; remembered in %s)", kwargs["model"], folder)
    reference = ClapBackend(**{**kwargs, "device": "cpu"})
    ref = artifacts.load_reference(folder)
    if ref is None:
        ref = artifacts.reference_embeddings(reference)
        artifacts.save_reference(folder, ref)
    candidates: dict[str, Backend] = {"torch": reference}
    try:
        from .onnx import OnnxBackend

        candidates["onnx"] = OnnxBackend(**kwargs, source=reference)
    except Exception as ex:  # missing extra or failed export: say so; the exact torch path still works
        log.warning("onnx backend not measured: %s", ex)
    timings = {name: _time(b) for name, b in candidates.items()}
    deviations = {name: artifacts.deviation(b, ref) for name, b in candidates.items()}
    if bf16_supported():
        # converted in place (no second copy of the weights), so measured after fp32
        candidates["torch-bf16"] = reference.to_bf16()
        timings["torch-bf16"] = _time(reference)
        deviations["torch-bf16"] = artifacts.deviation(reference, ref)
    for name in candidates:
        artifacts.record_backend(folder, name, deviations[name], timings[name], kwargs["threads"])
    best = pick(timings, deviations)
    _remember(folder, sig, best, timings)
    log.info("auto backend: %s (%s)", best, ", ".join(f"{n} {t:.0f} ms" for n, t in sorted(timings.items())))
    if best == "torch" and reference.precision != "fp32":
        return get_backend("torch", **kwargs)  # the loaded model became the bf16 candidate
    return candidates[best]


def pick(timings: dict[str, float], deviations: dict[str, artifacts.Deviation]) -> str:
    """The fastest exact backend, or a near-exact one when it is clearly faster.

    Args:
        timings: milliseconds per 10 s window per backend.
        deviations: each backend's deviation from PyTorch fp32.

    Returns:
        The chosen backend's name.
    """
    exact = [n for n in timings if deviations[n].exact]
    near = [
        n
        for n in timings
        if not deviations[n].exact
        and min(deviations[n].audio_cosine_min, deviations[n].text_cosine_min) >= NEAR_EXACT_COSINE
    ]
    best = min(exact or ["torch"], key=lambda n: timings.get(n, float("inf")))
    if near:
        fast = min(near, key=lambda n: timings[n])
        if timings[fast] * NEAR_EXACT_GAIN < timings.get(best, float("inf")):
            best = fast
    return best


def _time(backend: Backend) -> float:
    # one block per candidate after its own warm-up: interleaving two runtimes on the same cores
    # makes each pay for the other's spinning threads (measured: +15-40 %)
    artifacts.time_per_window_ms(backend, repeats=2)
    return artifacts.time_per_window_ms(backend, repeats=REPEATS)


def _remember(folder: Path, sig: str, best: str, timings: dict[str, float]) -> None:
    def change(data: dict[str, Any]) -> None:
        data["choices"][sig] = {
            "backend": best,
            "ms_per_window": {n: round(t, 2) for n, t in timings.items()},
        }

    artifacts.update_records(folder, change)
