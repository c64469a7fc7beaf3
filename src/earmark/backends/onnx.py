"""CLAP on ONNX Runtime (CPU): fp32 (exact), or int8 audio when asked for.

The model is exported once (:mod:`earmark.backends.export`, which needs torch)
into the model's cache folder; after that this backend imports no torch and no
transformers: ONNX Runtime runs both towers, :mod:`~earmark.backends.features`
computes the features and the ``tokenizers`` library tokenises. So an ONNX
process never holds the PyTorch model, and starts in well under a second.

int8 (dynamic quantisation of both towers' matmuls; with VNNI here 2-3x
faster than fp32) is made only when asked for (``--backend onnx-int8``); it is not exact, and its measured deviation
from PyTorch fp32 is recorded and shown by ``earmark model info``. Dynamic
quantisation scales activations over the whole input tensor, so int8 runs one
window per call: a window's result never depends on its batch.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import models
from ..errors import ConfigError, MissingExtraError, ModelError
from . import artifacts
from .features import FeaturesMixin, LogMel, MelSettings

if TYPE_CHECKING:
    from .clap import ClapBackend

__all__ = ["IdleRelease", "OnnxBackend", "TextTowerMixin", "return_freed_memory", "text_idle_s"]

log = logging.getLogger("earmark")

TEXT_BATCH = 16


def text_idle_s() -> float:
    """Seconds a text tower may sit unused before it is released (``$EARMARK_TEXT_IDLE_S``, 0: never)."""
    try:
        return float(os.environ.get("EARMARK_TEXT_IDLE_S", "300"))
    except ValueError:
        raise ConfigError("EARMARK_TEXT_IDLE_S must be a number of seconds") from None


def return_freed_memory() -> None:
    """Hand memory freed by a released tower back to the OS (glibc keeps it in its heap otherwise).

    Measured with the full-size model (``bench/bench_memory.py``): RSS after the text tower
    was released 544 instead of 666 MiB on OpenVINO, 365 instead of 483 on ONNX Runtime (the
    audio-only figure). A no-op where there is no glibc.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class IdleRelease:
    """Calls ``release(idle_s)`` once ``idle_s`` passed after the last :meth:`touch`.

    ``release`` returns whether it released (it checks the last use itself); if not, the
    timer is armed again. One daemon timer at a time; nothing runs while unused.
    """

    def __init__(self, idle_s: float, release: Any) -> None:
        self.idle_s, self._release = idle_s, release
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def touch(self) -> None:
        if self.idle_s <= 0:
            return
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(self.idle_s, self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
        if not self._release(self.idle_s):
            self.touch()


class TextTowerMixin:
    """What the exported backends (ONNX Runtime, OpenVINO) share: a text tower loaded on demand and
    released when idle, and the deviation from PyTorch recorded once per backend."""

    _text: Any
    _text_lock: threading.Lock
    _text_used: float
    folder: Path
    name: str
    threads: int | None

    @property
    def text_loaded(self) -> bool:
        """Whether the text tower is in memory now."""
        return self._text is not None

    def release_text(self, idle_s: float = 0.0) -> bool:
        """Drop the text tower when unused for ``idle_s`` seconds (loaded again on demand).

        Returns:
            Whether it was released.
        """
        with self._text_lock:
            if self._text is None or time.monotonic() - self._text_used < idle_s:
                return False
            self._text = None
            log.debug("text tower released after %.0f s unused", idle_s)
        return_freed_memory()
        return True

    def _record_deviation(self) -> None:
        records = artifacts.read_records(self.folder)
        if "deviation" in records["backends"].get(self.name, {}):
            return
        ref = artifacts.load_reference(self.folder)
        if ref is not None:
            artifacts.record_backend(
                self.folder, self.name, artifacts.deviation(self, ref), None, self.threads
            )


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError("the onnx backend", "") from None  # a base dependency
    return onnxruntime


class OnnxBackend(TextTowerMixin, FeaturesMixin):
    """A CLAP checkpoint on ONNX Runtime, exported on first use.

    Args:
        model: alias, hub id or folder (see :func:`earmark.models.resolve`).
        device: ``auto`` or ``cpu`` (ONNX Runtime runs on the CPU here).
        threads: intra-op threads; default all cores.
        batch_size: most windows per run.
        int8: use the int8 audio tower (made on first use; needs onnxruntime, a base dependency).
        source: an already loaded fp32 CPU PyTorch backend to export from (saves loading it twice).
    """

    # model calls that may run at once (the windows->embeddings stage keeps this many in flight)
    streams = 1

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        batch_size: int = 8,
        int8: bool = False,
        source: ClapBackend | None = None,
    ) -> None:
        path = models.resolve(model)
        model_id = models.requested(model)
        want = (device or os.environ.get("EARMARK_DEVICE") or "auto").lower()
        if want not in ("auto", "cpu"):
            raise ConfigError(
                f"the onnx backend runs on the CPU, not {want!r}; use --backend torch for a GPU"
            )
        _ort()
        folder = artifacts.artifact_dir(path, model_id)
        if not (folder / "meta.json").is_file():
            _export(model, source, threads, folder)
        meta = json.loads((folder / "meta.json").read_text())
        self._setup(folder, meta, threads, batch_size, int8=int8)
        self.model_id = model_id
        self.path = path
        self.name = "onnx-int8" if int8 else "onnx"
        self.folder = folder
        self._record_deviation()

    @classmethod
    def from_folder(cls, folder: Path, meta: dict[str, Any], *, threads: int | None = None) -> OnnxBackend:
        """A backend on an export folder as it is (used to check a fresh export)."""
        self = cls.__new__(cls)
        self._setup(folder, meta, threads, 8, int8=False)
        self.path = folder
        self.model_id = str(meta["model_id"])
        self.name = "onnx"
        self.folder = folder
        return self

    def _setup(
        self, folder: Path, meta: dict[str, Any], threads: int | None, batch_size: int, *, int8: bool
    ) -> None:
        from tokenizers import Tokenizer

        self._threads = threads
        self._mel = LogMel(MelSettings.from_folder(folder))
        self.sample_rate = int(meta["sample_rate"])
        self.window_samples = int(meta["window_samples"])
        self.logit_scale = float(meta["logit_scale"])
        self.dim = int(meta["dim"])
        self.fused = bool(meta["fused"])
        # one window per run: as fast per window as 8 on a CPU (measured: 56 vs 61 ms), an eighth of
        # the activation memory, and needed by int8, whose dynamic quantisation scales activations
        # over the whole input tensor (a window's result would depend on its batch)
        self._run_size = 1
        self.batch_size = self._run_size
        self.threads = threads
        self._pad_id = int(meta["pad_id"])
        self._max_tokens = int(meta["max_tokens"])
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self._max_tokens)
        # int8 quantises activations with one scale per input tensor: one text per run, so a
        # text's embedding does not depend on the others (or their padding)
        self._text_batch = 1 if int8 else TEXT_BATCH
        self._audio = _session(_int8(folder, "audio") if int8 else folder / "audio.onnx", threads)
        self._text_file = _int8(folder, "text") if int8 else folder / "text.onnx"
        self._text: Any = None  # loaded on first use: embedding stored audio needs no text tower
        self._text_lock = threading.Lock()
        self._text_used = 0.0
        self._text_idle = IdleRelease(text_idle_s(), self.release_text)

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """Audio embeddings from a batch of features."""
        step = self._run_size
        out = [
            self._audio.run(None, {"input_features": np.ascontiguousarray(feats[i : i + step])})[0]
            for i in range(0, len(feats), step)
        ]
        return _normalised(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        session = self._text_session()
        encs = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: (len(encs[i].ids), i))
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(order), self._text_batch):
            idx = order[start : start + self._text_batch]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encs[i].ids)
                ids[row, :n] = encs[i].ids
                mask[row, :n] = 1
            out[idx] = _normalised(session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
        self._text_used = time.monotonic()
        self._text_idle.touch()
        return out

    def _text_session(self) -> Any:
        with self._text_lock:
            if self._text is None:
                self._text = _session(self._text_file, self._threads)
            return self._text


def _session(file: Path, threads: int | None) -> Any:
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # spin-wait between operators within a run (without: 53 ms instead of 42 ms per window here),
    # but stop when the run ends, so decoding threads (embed_many) get the cores between runs
    so.add_session_config_entry("session.intra_op.allow_spinning", "1")
    so.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(str(file), so, providers=["CPUExecutionProvider"])
    except Exception as ex:  # ORT raises its own exception types for a corrupt file
        raise ModelError(f"cannot load {file}: {ex}; delete that folder to export again") from None


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def _export(model: str | None, source: ClapBackend | None, threads: int | None, folder: Path) -> None:
    from .clap import ClapBackend
    from .export import export_onnx

    if source is None or source.device.type != "cpu" or source.precision != "fp32":
        source = ClapBackend(model, device="cpu", threads=threads)
    export_onnx(source, folder)


def _int8(folder: Path, tower: str) -> Path:
    """The int8 version of a tower, quantised from the fp32 export on first use."""
    out = folder / f"{tower}-int8.onnx"
    if out.is_file():
        return out
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise MissingExtraError("int8 quantisation", "") from None  # a base dependency
    log.info("quantising the %s tower to int8 (once per model)", tower)
    tmp = folder / f".{tower}-int8.{os.getpid()}.onnx"
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the quantiser logs every skipped tensor on the root logger
    try:
        quantize_dynamic(str(folder / f"{tower}.onnx"), str(tmp), weight_type=QuantType.QInt8)
        os.replace(tmp, out)
    finally:
        logging.disable(previous)
        tmp.unlink(missing_ok=True)
    return out
