"""CLAP on OpenVINO (CPU): fp32 pinned (exact), or bf16/f16 when asked for.

Both towers are converted once from the ONNX export (:mod:`earmark.backends.export`)
into OpenVINO IR (``openvino/audio.xml`` and ``text.xml`` in the model's cache
folder, fp32 weights); after that this backend needs no torch. The text tower
runs on ONNX Runtime where it is installed (it memory-maps the weights: 335
instead of 830 MiB resident for the full-size model, and faster), else on OpenVINO. OpenVINO picks bf16 by itself on CPUs that have it, which is not exact
(and measured slower on an AVX512-BF16 Xeon without AMX), so the inference
precision is pinned: ``f32`` unless ``bf16`` or ``f16`` is asked for
(``--backend openvino-bf16`` / ``openvino-f16``); their measured deviation from
PyTorch fp32 is recorded and shown by ``earmark model info``.

Streams: a lone clip runs fastest with every thread on one call (LATENCY
mode, one stream); a caller that keeps several windows in flight (tag, serve,
eval, monitor: ``throughput=True``) gets two streams (THROUGHPUT mode, each on
its share of the threads), which need no synchronisation between threads and
so keep their speed next to decoding. Measured on a 2-core AMD EPYC, full-size
model: a lone window 78 ms on one stream, 148 on two; ``earmark tag`` of 100
10 s mp3s 7.7-7.9 files/s on one stream, 8.7-9.6 on two. On a 2-core Xeon
two streams gave 23 % more windows/s even alone. ``streams=`` or
``$EARMARK_STREAMS`` overrides; :meth:`OpenVinoBackend.embed_features` is
thread-safe.

The audio tower is compiled for one window per call (a static input shape):
8 % faster than the dynamic batch axis (77 vs 84 ms per window, measured
interleaved on the EPYC), and a window's embedding is computed the same way
wherever it sits in a batch.

Measured on a 2-core Xeon (AVX-512, full-size fused model, ms per 10 s window):
ONNX Runtime fp32 148; OpenVINO f32 85.5 at batch 1, 69.5 with 2 streams; max
diff from PyTorch 1.1e-7.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import models
from ..errors import ConfigError, MissingExtraError, ModelError
from . import artifacts
from .features import FeaturesMixin, LogMel, MelSettings
from .onnx import IdleRelease, TextTowerMixin, text_idle_s
from .resident import drop_mapped_pages

if TYPE_CHECKING:
    from .clap import ClapBackend

__all__ = ["PRECISIONS", "OpenVinoBackend", "convert"]

log = logging.getLogger("earmark")

TEXT_BATCH = 16
# OpenVINO's names for the inference precisions earmark offers
PRECISIONS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}
IR_DIR = "openvino"


def _ov() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingExtraError("the openvino backend", "openvino") from None
    return openvino


def convert(folder: Path) -> Path:
    """Convert the ONNX export in ``folder`` to OpenVINO IR once; return the IR folder.

    The IR keeps fp32 weights (``compress_to_fp16=False``): the precision is chosen
    when compiling, never baked into the file.
    """
    out = folder / IR_DIR
    if (out / "done").is_file():
        return out
    ov = _ov()
    with artifacts.locked(folder):
        if (out / "done").is_file():  # another process converted it while we waited
            return out
        tmp = folder / f".openvino-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        log.info("converting %s to OpenVINO (once per model)", folder.name)
        try:
            for tower in ("audio", "text"):
                model = ov.convert_model(str(folder / f"{tower}.onnx"))
                ov.save_model(model, str(tmp / f"{tower}.xml"), compress_to_fp16=False)
                del model
            (tmp / "done").write_text("1\n")
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
        except Exception as ex:  # OpenVINO raises its own types for an unreadable model
            raise ModelError(f"OpenVINO conversion of {folder.name} failed: {ex}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("OpenVINO conversion done in %.1f s", time.perf_counter() - t0)
    return out


class OpenVinoBackend(TextTowerMixin, FeaturesMixin):
    """A CLAP checkpoint on OpenVINO's CPU plugin, converted on first use.

    Args:
        model: alias, hub id or folder (see :func:`earmark.models.resolve`).
        device: ``auto`` or ``cpu``.
        threads: inference threads; default all cores.
        batch_size: accepted for the common backend signature; a CPU call takes one window
            (``self.batch_size`` is 1, see below).
        precision: ``f32`` (exact, the default), ``bf16`` or ``f16`` (approximate; asked for only).
        streams: inference streams for the audio tower; default ``$EARMARK_STREAMS``, else 2 for
            ``throughput`` on 2+ threads, else 1.
        throughput: the caller keeps several windows in flight (see the module notes).
        source: an already loaded fp32 CPU PyTorch backend to export from (saves loading it twice).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        batch_size: int = 8,
        precision: str = "f32",
        streams: int | None = None,
        throughput: bool = False,
        source: ClapBackend | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"openvino precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        want = (device or os.environ.get("EARMARK_DEVICE") or "auto").lower()
        if want not in ("auto", "cpu"):
            raise ConfigError(
                f"the openvino backend runs on the CPU, not {want!r}; use --backend torch for a GPU"
            )
        path = models.resolve(model)
        model_id = models.canonical(str(model or os.environ.get("EARMARK_MODEL") or models.DEFAULT_MODEL))
        ov = _ov()
        folder = artifacts.artifact_dir(path, model_id)
        if not (folder / "meta.json").is_file():
            from .onnx import _export

            _export(model, source, threads, folder)
        ir = convert(folder)
        meta = artifacts.read_meta(folder)
        self._mel = LogMel(MelSettings.from_folder(folder))
        self.model_id = model_id
        self.path = path
        self.folder = folder
        self.precision = precision
        self.name = "openvino" if precision == "f32" else f"openvino-{precision}"
        self.sample_rate = int(meta["sample_rate"])
        self.window_samples = int(meta["window_samples"])
        self.logit_scale = float(meta["logit_scale"])
        self.dim = int(meta["dim"])
        self.fused = bool(meta["fused"])
        # one window per call, as ONNX Runtime on a CPU: the stage pads every call to exactly
        # batch_size rows (fixed shape, bit-identical wherever a window sits), so 8 would cost a
        # lone clip 8 windows of work; throughput comes from ``streams`` calls at once instead
        # (measured on a Xeon: batch 4 only 8 % faster per window than batch 1, 2 streams 23 %)
        del batch_size
        self.batch_size = 1
        self.threads = threads
        n_threads = threads or os.cpu_count() or 1
        self.streams = _streams(streams, n_threads, throughput)
        self._pad_id = int(meta["pad_id"])
        self._max_tokens = int(meta["max_tokens"])
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self._max_tokens)
        self._core = ov.Core()
        # compiled blobs kept next to the IR: a later start loads in ~1 s instead of ~3 s (measured)
        with contextlib.suppress(Exception):
            self._core.set_property({"CACHE_DIR": str(ir / "blobs")})
        self._threads_n = n_threads
        self._ir = ir
        self._audio = self._compile(ir / "audio.xml", self.streams, one_window=True)
        self._requests: queue.Queue[Any] = queue.Queue()
        for _ in range(self.streams):
            request = self._audio.create_infer_request()
            # OpenVINO's Python binding fills a static table on a tensor's first ``.data``; two threads
            # doing that at once deadlocked (one in the C++ static guard holding the GIL, one inside it
            # waiting for the GIL: `earmark tag` hung at its first two windows, seen with py-spy). Once
            # here, on one thread, it is filled before any stream runs.
            request.get_input_tensor(0).data  # noqa: B018
            request.get_output_tensor(0).data  # noqa: B018
            self._requests.put(request)
        # requests that have not run yet: each one's first run copies what it needs of the weights
        self._unrun: set[int] | None = {id(r) for r in list(self._requests.queue)}
        self._unrun_lock = threading.Lock()
        self._text: Any = None  # compiled on first use: embedding stored audio needs no text tower
        self._text_lock = threading.Lock()
        self._text_used = 0.0
        self._text_idle = IdleRelease(text_idle_s(), self.release_text)
        self._record_deviation()

    def _compile(self, xml: Path, streams: int, *, one_window: bool = False) -> Any:
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[self.precision],
            "INFERENCE_NUM_THREADS": self._threads_n,
            "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
            "NUM_STREAMS": streams,
        }
        try:
            model = self._core.read_model(str(xml))
            if one_window:  # a static shape: faster kernels and memory plan than a dynamic batch axis
                port = model.inputs[0]
                rest = [dim.get_length() for dim in list(port.get_partial_shape())[1:]]
                model.reshape({port.get_any_name(): [1, *rest]})
            return self._core.compile_model(model, "CPU", config)
        except Exception as ex:  # OpenVINO's own exception types
            raise ModelError(f"cannot load {xml}: {ex}; delete {xml.parent} to convert again") from None

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """Audio embeddings from a batch of features; thread-safe (one infer request per stream).

        The tower takes one window per run; the windows of a call are spread over the streams
        that are free, so one call alone still uses every stream. A window's embedding does not
        depend on the batch or the stream it ran on.
        """
        if not len(feats):
            return np.zeros((0, self.dim), np.float32)
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        requests = [self._requests.get()]
        while len(requests) < min(self.streams, len(feats)):
            try:
                requests.append(self._requests.get_nowait())
            except queue.Empty:
                break
        out = np.empty((len(feats), self.dim), np.float32)
        try:
            for start in range(0, len(feats), len(requests)):
                running = list(
                    zip(range(start, min(start + len(requests), len(feats))), requests, strict=False)
                )
                for row, request in running:
                    request.start_async({0: feats[row : row + 1]})
                for row, request in running:
                    request.wait()
                    out[row] = request.get_output_tensor(0).data[0]
            if self._unrun is not None:
                self._ran(requests)
        finally:
            for request in requests:
                with contextlib.suppress(Exception):  # never hand back a request still running
                    request.wait()
                self._requests.put(request)
        return _normalised(out)

    def _ran(self, requests: list[Any]) -> None:
        """After each stream's first run, give back the mapped model file's pages (:mod:`.resident`).

        After every stream's, not only the last: a server warmed up on one stream idles without them.
        """
        with self._unrun_lock:
            if self._unrun is None:
                return
            first = self._unrun.intersection(id(r) for r in requests)
            self._unrun.difference_update(first)
            if not self._unrun:
                self._unrun = None
        if first:
            dropped = drop_mapped_pages(self._ir)
            log.debug("openvino: %d MiB of mapped model pages given back", dropped >> 20)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._text_lock:  # one text call at a time: the text tower is rarely hot
            run = self._text_model()
            encs = self._tokenizer.encode_batch(list(texts))
            order = sorted(range(len(texts)), key=lambda i: (len(encs[i].ids), i))
            out = np.zeros((len(texts), self.dim), np.float32)
            for start in range(0, len(order), TEXT_BATCH):
                idx = order[start : start + TEXT_BATCH]
                width = max(len(encs[i].ids) for i in idx)
                ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    n = len(encs[i].ids)
                    ids[row, :n] = encs[i].ids
                    mask[row, :n] = 1
                out[idx] = _normalised(run(ids, mask))
            self._text_used = time.monotonic()
        self._text_idle.touch()
        return out

    def _text_model(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The text tower as ``run(ids, mask)``: on ONNX Runtime where installed, else OpenVINO.

        Measured with the full-size model: ONNX Runtime memory-maps the text weights (+335 MiB
        resident, 3.4 s for 50 new labels) where OpenVINO's CPU plugin copies them (+830 MiB,
        4.9 s); both are exact.
        """
        if self._text is None:
            try:
                from .onnx import _session

                session = _session(self.folder / "text.onnx", self.threads)
                self._text = lambda ids, mask: np.asarray(
                    session.run(None, {"input_ids": ids, "attention_mask": mask})[0], np.float32
                )
            except MissingExtraError:
                compiled = self._compile(self._ir / "text.xml", 1)

                def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
                    res = compiled.create_infer_request().infer({"input_ids": ids, "attention_mask": mask})
                    return np.array(res[0], dtype=np.float32)

                self._text = run
        run_text: Callable[[np.ndarray, np.ndarray], np.ndarray] = self._text
        return run_text


def _streams(asked: int | None, threads: int, throughput: bool) -> int:
    if asked is None:
        env = os.environ.get("EARMARK_STREAMS", "").strip()
        if env:
            try:
                asked = int(env)
            except ValueError:
                raise ConfigError(f"EARMARK_STREAMS={env!r}: expected a whole number") from None
    if asked is None:
        asked = 2 if throughput else 1
    if asked < 1:
        raise ConfigError(f"streams must be at least 1, got {asked}")
    return min(asked, threads)


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out
