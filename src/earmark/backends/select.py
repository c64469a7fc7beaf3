"""``auto``: pick the fastest exact backend on this machine by measuring it, once per model and CPU.

On a CUDA GPU the answer is PyTorch fp16. On a CPU the model is prepared once
(:mod:`earmark.backends.prepare`, in a child process, announced on stderr):
loaded in PyTorch fp32 (the exact reference), exported to ONNX, converted to
OpenVINO, and one 10 s window timed on each exact candidate (OpenVINO f32,
ONNX Runtime fp32, PyTorch fp32). The measuring process is not the one that
serves: a process whose choice is not PyTorch never imports torch.

Measuring on a shared machine:

- candidates are timed in interleaved rounds (each round: every candidate,
  in rotated order, a warm-up call and then timed calls), the figure is the
  median over rounds; a backend with several inference streams (OpenVINO on
  2+ threads, as tag, serve and eval load it) is timed with that many calls
  in flight, as the windows -> embeddings stage runs it, and its figure is per
  window;
- a round is discarded and measured again when the CPU was busy during it: the
  1-minute load above the core count, steal time above 5 %, or a fixed
  calibration loop running 25 % slower than its best this run. When every
  round is busy the figures are kept and marked as taken under load;
- the choice changes only on a margin of at least ``SWITCH_MARGIN`` (10 %): the
  incumbent is the remembered choice, else the lightest candidate (ONNX
  Runtime, which memory-maps its weights; then OpenVINO, which copies them:
  a served full-size model peaked at 448 vs 566 MiB; then PyTorch, which costs
  ~300 MiB more and seconds to start);
- only exact candidates (max diff <= 1e-4 from PyTorch fp32) are considered,
  unless a precision is asked for: ``EARMARK_PRECISION=bf16`` (or ``int8``)
  adds the backends of that precision.

The choice is remembered per CPU and thread count in the model's cache folder;
a thread count that was not measured uses the nearest measured one on the same
CPU (a new ``--threads`` never triggers a new export or measurement). When and
under what load each figure was taken is recorded and shown by
``earmark model info``; ``earmark model prepare`` measures again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import models
from ..errors import ConfigError, EarmarkError
from . import Backend, artifacts, backend_name, get_backend

__all__ = [
    "EXACT_CANDIDATES",
    "SWITCH_MARGIN",
    "Conditions",
    "auto_backend",
    "choose",
    "measure",
    "pick",
    "remembered_choice",
]

log = logging.getLogger("earmark")

# exact CPU candidates, lightest first (memory-mapped weights, no PyTorch in memory, faster start):
# the incumbent order; measured serving the full-size model with the page: onnx 384 MiB idle / 448 peak,
# openvino 525 / 566 (bench/RESULTS.md, issue 17)
EXACT_CANDIDATES = ("onnx", "openvino", "torch")
# approximate candidates per precision, considered only when that precision is asked for
APPROX_CANDIDATES = {"bf16": ("openvino-bf16",), "int8": ("onnx-int8",)}
SWITCH_MARGIN = 1.10
ROUNDS = 3
TIMED_CALLS = 3
EXTRA_ROUNDS = 3
BUSY_CALIBRATION = 1.25
BUSY_STEAL = 0.05


def auto_backend(
    model: str | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    batch_size: int = 8,
    throughput: bool = False,
) -> Backend:
    """The remembered (or freshly measured) fastest backend for ``model`` here.

    Args:
        model: alias, hub id or folder.
        device: ``auto``, ``cpu``, ``cuda``...; a GPU always means PyTorch.
        threads: CPU threads; part of the machine signature.
        batch_size: most windows per forward pass.
        throughput: several windows in flight (see :func:`earmark.backends.get_backend`).
    """
    kwargs: dict[str, Any] = {
        "model": model,
        "device": device,
        "threads": threads,
        "batch_size": batch_size,
        "throughput": throughput,
    }
    if _wants_gpu(device):
        return get_backend("torch", **kwargs)
    path = models.resolve(model)
    model_id = models.requested(model)
    folder = artifacts.artifact_dir(path, model_id)
    sig = artifacts.machine_signature(threads)
    remembered = remembered_choice(artifacts.read_records(folder), threads)
    if remembered in cpu_candidates():
        log.debug("auto backend for %s: %s (remembered)", model_id, remembered)
        return get_backend(remembered, **kwargs)
    return choose(folder, sig, kwargs)


def planned_backend(
    name: str | None, model: str | None, device: str | None, threads: int | None
) -> str | None:
    """The backend ``name`` loads for ``model`` at ``threads`` without measuring anything.

    ``name`` itself, or for ``auto`` the choice it remembers here; None when ``auto`` would
    measure first or the model is not found (loading it then says why). Read before the
    thread count is fixed, so a default can suit the backend.
    """
    key = backend_name(name)
    if key != "auto":
        return key
    if _wants_gpu(device):
        return "torch"
    try:
        folder = artifacts.artifact_dir(models.resolve(model), models.requested(model))
    except EarmarkError:
        return None
    remembered = remembered_choice(artifacts.read_records(folder), threads)
    return remembered if remembered in cpu_candidates() else None


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


def asked_precision() -> str | None:
    """``$EARMARK_PRECISION`` (``bf16`` or ``int8``): approximate candidates ``auto`` may pick."""
    value = os.environ.get("EARMARK_PRECISION", "").strip().lower()
    if value in ("", "fp32", "f32", "exact"):
        return None
    if value not in APPROX_CANDIDATES:
        raise ConfigError(f"EARMARK_PRECISION={value!r}: expected fp32, {' or '.join(APPROX_CANDIDATES)}")
    return value


def cpu_candidates(precision: str | None = None) -> tuple[str, ...]:
    """The backends ``auto`` measures on a CPU (exact ones, plus those of an asked precision)."""
    precision = precision if precision is not None else asked_precision()
    return EXACT_CANDIDATES + (APPROX_CANDIDATES[precision] if precision else ())


def remembered_choice(records: dict[str, Any], threads: int | None) -> str | None:
    """The choice for this CPU at ``threads``, else at the nearest measured thread count."""
    choices: dict[str, dict[str, Any]] = records.get("choices", {})
    sig = artifacts.machine_signature(threads)
    allowed = cpu_candidates()
    if sig in choices and choices[sig].get("cpu") and choices[sig].get("backend") in allowed:
        return str(choices[sig]["backend"])
    cpu = artifacts.cpu_signature()
    want = threads or os.cpu_count() or 1
    near = [
        (abs(int(c.get("threads", 0)) - want), s)
        for s, c in choices.items()
        if c.get("cpu") == cpu and c.get("backend") in allowed
    ]
    return str(choices[min(near)[1]]["backend"]) if near else None


def choose(folder: Path, sig: str, kwargs: dict[str, Any]) -> Backend:
    """Prepare the model here (a child process measures), then load the remembered winner."""
    from .prepare import prepare_in_child

    threads = kwargs.get("threads")
    prepare_in_child(kwargs.get("model"), threads)
    choice = remembered_choice(artifacts.read_records(folder), threads)
    if choice is None:  # the child failed to measure: the exact reference still works
        log.warning("no backend could be measured for %s; using torch", kwargs.get("model"))
        choice = "torch"
    return get_backend(choice, **kwargs)


@dataclass(frozen=True, kw_only=True)
class Conditions:
    """Under what load a set of figures was taken.

    Attributes:
        measured_at: UTC time, ISO 8601.
        load_before: 1-minute load average before the first round.
        load_after: 1-minute load average after the last round.
        cores: CPUs this process may use.
        steal_max: largest share of CPU time stolen (by the hypervisor) in a kept round.
        calibration_max: slowest calibration loop of a kept round over the best one.
        rounds_kept: rounds the figures are the median of.
        rounds_discarded: rounds measured again because the CPU was busy.
        busy: the kept rounds were busy too (not enough quiet rounds).
    """

    measured_at: str
    load_before: float
    load_after: float
    cores: int
    steal_max: float
    calibration_max: float
    rounds_kept: int
    rounds_discarded: int
    busy: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for ``earmark model info``."""
        busy = "; busy: every round was under load" if self.busy else ""
        return (
            f"measured {self.measured_at} at load {self.load_before:.1f}->{self.load_after:.1f}"
            f" on {self.cores} cores, {self.rounds_kept} rounds kept,"
            f" {self.rounds_discarded} discarded as busy{busy}"
        )


def _load1() -> float:
    with contextlib.suppress(OSError):
        return os.getloadavg()[0]
    return 0.0


def _cpu_times() -> tuple[int, int]:
    """(total, steal) jiffies of all CPUs from /proc/stat; zeros where unavailable."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        return sum(fields), fields[7] if len(fields) > 7 else 0
    return 0, 0


def _calibrate() -> float:
    """Seconds for a fixed bit of CPU work (single-threaded matmuls): slow when others run."""
    a = np.full((96, 96), 0.5, np.float32)
    t0 = time.perf_counter()
    for _ in range(40):
        a = (a @ a) * np.float32(1.0 / 48.0)
    return time.perf_counter() - t0


def _cores() -> int:
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _ms_per_window(backend: Backend, win: list[np.ndarray], timed: int) -> float:
    """Median ms per window with ``backend.streams`` calls in flight, as the stage runs it.

    One call at a time would rate a backend with two streams (each on half the threads) at one
    stream's speed; every embedding stage (tag, eval, serve, monitor) keeps ``streams`` calls busy.
    """
    streams = max(1, int(getattr(backend, "streams", 1)))  # PyTorch here predates the attribute

    with ThreadPoolExecutor(streams, thread_name_prefix="earmark-measure") as pool:

        def once() -> None:
            if streams == 1:
                backend.embed_audio(win)
            else:
                list(pool.map(lambda _: backend.embed_audio(win), range(streams)))

        once()  # warm-up: caches, thread pools, another runtime's spinning
        times = []
        for _ in range(timed):
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0 / (len(win) * streams)


def measure(
    candidates: dict[str, Backend],
    *,
    rounds: int = ROUNDS,
    timed: int = TIMED_CALLS,
    extra_rounds: int = EXTRA_ROUNDS,
    windows: Sequence[np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, float], Conditions]:
    """Milliseconds per 10 s window of each candidate, from interleaved rounds on a quiet CPU.

    Args:
        candidates: backends by name (all loaded).
        rounds: quiet rounds wanted.
        timed: timed calls per candidate and round (after one warm-up call).
        extra_rounds: busy rounds that may be measured again before busy figures are kept.
        windows: the windows timed (default the first probe window).
        progress: called with a short line after each round.

    Returns:
        ``(ms per window by name, the conditions)``.
    """
    names = list(candidates)
    first = next(iter(candidates.values()))
    win = list(windows or artifacts.probe_windows(first.sample_rate, first.window_samples)[:1])
    cores = _cores()
    best_cal = min(_calibrate() for _ in range(3))
    load_before = _load1()
    kept: list[dict[str, float]] = []
    busy_rounds: list[tuple[dict[str, float], float, float]] = []
    kept_steal, kept_cal = 0.0, 1.0
    discarded = 0
    for attempt in range(rounds + extra_rounds):
        if len(kept) >= rounds:
            break
        cal0 = _calibrate()
        total0, steal0 = _cpu_times()
        order = names[attempt % len(names) :] + names[: attempt % len(names)]
        figures: dict[str, float] = {}
        for name in order:
            figures[name] = _ms_per_window(candidates[name], win, timed)
        total1, steal1 = _cpu_times()
        cal1 = _calibrate()
        best_cal = min(best_cal, cal0, cal1)
        steal = (steal1 - steal0) / (total1 - total0) if total1 > total0 else 0.0
        cal = max(cal0, cal1) / best_cal
        busy = _load1() > cores + 0.5 or steal > BUSY_STEAL or cal > BUSY_CALIBRATION
        state = "busy, measured again" if busy else "kept"
        if progress is not None:
            shown = ", ".join(f"{n} {figures[n]:.0f} ms" for n in names)
            progress(f"round {attempt + 1}: {shown} ({state}; load {_load1():.1f})")
        if busy:
            discarded += 1
            busy_rounds.append((figures, steal, cal))
            continue
        kept.append(figures)
        kept_steal, kept_cal = max(kept_steal, steal), max(kept_cal, cal)
    all_busy = not kept
    if all_busy:  # no quiet round: keep the busy figures, and say so
        kept = [f for f, _, _ in busy_rounds]
        kept_steal = max(s for _, s, _ in busy_rounds)
        kept_cal = max(c for _, _, c in busy_rounds)
        discarded = 0
    timings = {n: float(statistics.median(r[n] for r in kept)) for n in names}
    conditions = Conditions(
        measured_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        load_before=round(load_before, 2),
        load_after=round(_load1(), 2),
        cores=cores,
        steal_max=round(kept_steal, 4),
        calibration_max=round(kept_cal, 3),
        rounds_kept=len(kept),
        rounds_discarded=discarded,
        busy=all_busy,
    )
    return timings, conditions


def pick(
    timings: dict[str, float],
    deviations: dict[str, artifacts.Deviation],
    *,
    incumbent: str | None = None,
    precision: str | None = None,
) -> str:
    """The fastest allowed backend, taken over the incumbent only on a ``SWITCH_MARGIN`` margin.

    Args:
        timings: milliseconds per 10 s window per backend.
        deviations: each backend's deviation from PyTorch fp32.
        incumbent: the current choice; default the lightest exact candidate measured.
        precision: ``bf16`` or ``int8`` when asked for: that precision's backends are allowed.

    Returns:
        The chosen backend's name.
    """
    approx = APPROX_CANDIDATES.get(precision or "", ())
    allowed = [n for n in timings if deviations[n].exact or n in approx]
    if not allowed:
        return "torch"
    fastest = min(allowed, key=lambda n: timings[n])
    if incumbent not in allowed:
        light = [n for n in EXACT_CANDIDATES if n in allowed and deviations[n].exact]
        incumbent = light[0] if light else fastest
    if timings[fastest] * SWITCH_MARGIN <= timings[incumbent]:
        return fastest
    return incumbent
