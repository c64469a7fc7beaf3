"""What backends derive from a model and keep: exports, measurements, the automatic choice.

Everything lives in one folder per model and earmark version,
``$EARMARK_HOME/cache/<name>-<fingerprint>-v<version>-e<export format>/``:

- ``audio.onnx``, ``text.onnx``, ``tokenizer.json``, ``meta.json``: the ONNX export;
- ``audio-int8.onnx``: the int8 audio tower, made only when asked for;
- ``reference.npz``: PyTorch fp32 embeddings of fixed probe windows and texts,
  so any backend can state its deviation without loading PyTorch again;
- ``records.json``: per backend the measured speed and deviation, and per
  machine the automatic choice.

The fingerprint covers the config, feature and tokenizer files' contents and
the weight files' identity (hub blobs are named by their hash; local files by
size and modification time), so changed weights mean a fresh export.
Imports numpy only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths, synth

__all__ = [
    "PROBE_TEXTS",
    "Deviation",
    "artifact_dir",
    "cpu_signature",
    "deviation",
    "fingerprint",
    "locked",
    "machine_signature",
    "probe_windows",
    "read_meta",
    "read_records",
    "time_per_window_ms",
    "update_records",
]

log = logging.getLogger("earmark")

PROBE_KINDS = ("beep", "noise", "chirp", "clicks", "hum")
PROBE_TEXTS = (
    "This is a sound of dog barking.",
    "This is a sound of glass breaking.",
    "This is a sound of a siren.",
    "This is a sound of rain on a window.",
)
# a path is "exact" within this max abs diff of PyTorch fp32 (the transformers reference)
EXACT_MAX_DIFF = 1e-4
# bumped when what is exported changes, so old exports are not reused
EXPORT_FORMAT = 2


def _version() -> str:
    from .. import __version__

    return __version__


def fingerprint(path: Path) -> str:
    """A short hash naming what a model folder holds (see the module docstring)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        f = path / name
        if not f.is_file():
            continue
        h.update(name.encode())
        if name.endswith((".json", ".txt", ".model")) and f.stat().st_size < 16 * 1024**2:
            h.update(f.read_bytes())
        else:  # weights: identity without reading gigabytes
            real = Path(os.path.realpath(f))
            st = real.stat()
            h.update(f"{real.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def artifact_dir(path: Path, model_id: str) -> Path:
    """The cache folder for a model folder ``path`` (not created here)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(model_id).name or "model")[:40]
    return paths.earmark_home() / "cache" / f"{safe}-{fingerprint(path)}-v{_version()}-e{EXPORT_FORMAT}"


def cpu_signature() -> str:
    """What a speed measurement depends on besides threads: CPU model and Python platform."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu} | {platform.system()}"


def machine_signature(threads: int | None) -> str:
    """What a speed measurement depends on: CPU model, threads, Python platform."""
    cpu, system = cpu_signature().rsplit(" | ", 1)
    return f"{cpu} | threads={threads or os.cpu_count()} | {system}"


def read_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` of a complete export."""
    data: dict[str, Any] = json.loads((folder / "meta.json").read_text())
    return data


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive file lock on a cache folder (between processes), creating the folder."""
    with _locked(folder):
        yield


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: last writer wins
        yield
        return
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_records(folder: Path) -> dict[str, Any]:
    """``records.json`` of a cache folder; empty when absent or unreadable."""
    try:
        data = json.loads((folder / "records.json").read_text())
    except (OSError, ValueError):
        return {"backends": {}, "choices": {}}
    data.setdefault("backends", {})
    data.setdefault("choices", {})
    return dict(data)


def update_records(folder: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read-modify-write ``records.json`` under a file lock, replacing it atomically."""
    with _locked(folder):
        data = read_records(folder)
        change(data)
        tmp = folder / f"records.json.{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, folder / "records.json")
    return data


def probe_windows(sample_rate: int, window_samples: int) -> list[np.ndarray]:
    """Fixed 10 s test windows (synthetic, seeded): the same on every machine."""
    seconds = window_samples / sample_rate
    out = []
    for i, kind in enumerate(PROBE_KINDS):
        wave = synth.make(kind, seconds, seed=1000 + i, rate=sample_rate)
        out.append(np.ascontiguousarray(wave[:window_samples], dtype=np.float32))
    return out


@dataclass(frozen=True, kw_only=True)
class Deviation:
    """How far a backend's embeddings are from PyTorch fp32 on the probes.

    Attributes:
        audio_cosine_min: lowest cosine similarity over the probe windows.
        audio_max_diff: largest absolute difference of any embedding element.
        text_cosine_min: lowest cosine over the probe texts.
        text_max_diff: largest absolute difference for the texts.
    """

    audio_cosine_min: float
    audio_max_diff: float
    text_cosine_min: float
    text_max_diff: float

    @property
    def exact(self) -> bool:
        """Within 1e-4 of the reference everywhere (the parity the engine promises)."""
        return max(self.audio_max_diff, self.text_max_diff) <= EXACT_MAX_DIFF

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _compare(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return float(cos.min()), float(np.abs(got - want).max())


def deviation(backend: Any, reference: dict[str, np.ndarray]) -> Deviation:
    """Measure ``backend`` against reference embeddings of the probes.

    Args:
        backend: any :class:`~earmark.backends.Backend`.
        reference: ``{"audio": (n, dim), "text": (m, dim)}`` from PyTorch fp32.

    Returns:
        The :class:`Deviation`.
    """
    wins = probe_windows(backend.sample_rate, backend.window_samples)
    a_cos, a_diff = _compare(backend.embed_audio(wins), reference["audio"])
    t_cos, t_diff = _compare(backend.embed_text(list(PROBE_TEXTS)), reference["text"])
    return Deviation(
        audio_cosine_min=a_cos, audio_max_diff=a_diff, text_cosine_min=t_cos, text_max_diff=t_diff
    )


def reference_embeddings(backend: Any) -> dict[str, np.ndarray]:
    """Probe embeddings from an exact backend (PyTorch fp32), to store as ``reference.npz``."""
    wins = probe_windows(backend.sample_rate, backend.window_samples)
    return {"audio": backend.embed_audio(wins), "text": backend.embed_text(list(PROBE_TEXTS))}


def load_reference(folder: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(folder / "reference.npz") as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


def save_reference(folder: Path, ref: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"reference.{os.getpid()}.npz"
    np.savez(tmp, audio=ref["audio"], text=ref["text"])
    os.replace(tmp, folder / "reference.npz")


def time_per_window_ms(
    backend: Any, *, repeats: int = 5, windows: Sequence[np.ndarray] | None = None
) -> float:
    """Median milliseconds for one 10 s window, features included, after one warm-up call."""
    win = list(windows or probe_windows(backend.sample_rate, backend.window_samples)[:1])
    backend.embed_audio(win)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        backend.embed_audio(win)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0 / len(win))


def record_backend(
    folder: Path,
    name: str,
    dev: Deviation | None,
    ms: float | None,
    threads: int | None,
    conditions: dict[str, Any] | None = None,
) -> None:
    """Store what was measured for backend ``name`` on this machine (and under what load)."""

    def change(data: dict[str, Any]) -> None:
        entry = dict(data["backends"].get(name, {}))
        if dev is not None:
            entry["deviation"] = dev.to_dict()
            entry["exact"] = dev.exact
        if ms is not None:
            sig = machine_signature(threads)
            entry.setdefault("ms_per_window", {})[sig] = round(ms, 2)
            if conditions is not None:
                entry.setdefault("measured", {})[sig] = conditions
        data["backends"][name] = entry

    update_records(folder, change)
