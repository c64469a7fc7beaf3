"""CLAP on PyTorch via transformers' ``ClapModel``: the only module that imports torch at run time.

Determinism: transformers' ``ClapFeatureExtractor`` marks one *random* clip of a
batch as "longer" when none is, so with a fused checkpoint a clip's embedding
depends on the rest of its batch; and it picks random chunks of clips over
10 s. earmark computes the features of each window itself
(:mod:`earmark.backends.features`, equal to the single-clip extractor) and
always takes the fusion path for fused models (``is_longer=True`` for every
window). That is exactly what a single-clip call of the transformers pipeline
computes, and a window's embedding never depends on what else is in the batch.

Precision: fp32 on CPU (exact), fp16 on CUDA, or ``bf16`` on CPUs with native
bf16 (AVX512-BF16/AMX): linear and convolution weights converted to bf16 in place (no second copy), autocast keeping norms and softmax in fp32.
Its deviation from fp32 is measured and shown by ``earmark model info``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import models
from ..errors import ConfigError, ModelError
from .features import FeaturesMixin, LogMel, MelSettings

if TYPE_CHECKING:
    import torch

__all__ = ["ClapBackend", "bf16_supported"]

log = logging.getLogger("earmark")

# texts per forward pass; texts are sorted by length first so little is padding
TEXT_BATCH = 16
# windows per forward pass on a CPU (see ClapBackend.__init__)
CPU_RUN = 1


class ClapBackend(FeaturesMixin):
    """A CLAP checkpoint on PyTorch.

    Args:
        model: alias, hub id or folder (see :func:`earmark.models.resolve`).
        device: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        threads: CPU threads for torch; default all cores.
        batch_size: windows per forward pass on a GPU (a CPU runs one at a time, and says
            ``batch_size == 1``).
        precision: ``fp32`` (exact; fp16 on CUDA) or ``bf16`` (CPU autocast).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        batch_size: int = 8,
        precision: str = "fp32",
    ) -> None:
        path = models.resolve(model)  # before importing torch: a missing model fails fast
        import torch
        import transformers
        from transformers import AutoTokenizer, ClapModel

        from .htsat import use_fast_resize

        self.model_id = models.requested(model)
        self.path = path
        self.device = _pick_device(torch, device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.threads = threads
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            self._mel = LogMel(MelSettings.from_folder(path))
            loaded = ClapModel.from_pretrained(path, dtype=self.dtype)
            self._model = loaded.to(self.device).eval()  # type: ignore[arg-type]
            self._tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, KeyError, RuntimeError) as ex:
            raise ModelError(f"cannot load the CLAP model in {path}: {ex}") from None
        use_fast_resize(self._model.audio_model.audio_encoder, self._mel.frames)
        self.fused = bool(self._model.config.audio_config.enable_fusion)
        self.sample_rate = self._mel.settings.sample_rate
        self.window_samples = self._mel.settings.max_samples
        self.logit_scale = float(self._model.logit_scale_a.detach().float().exp())
        self.dim = int(self._model.config.projection_dim)
        # on a CPU one window per forward pass is as fast per window as 8 (measured: 102 vs 105 ms
        # fp32, 36 vs 40 ms bf16) and holds an eighth of the activations; the stage pads every
        # call to batch_size, so on a GPU a call is always one fixed shape
        self._run_size = batch_size if self.device.type == "cuda" else CPU_RUN
        self.batch_size = self._run_size
        self._torch = torch
        self.precision = "fp32"
        self.name = "torch"
        if precision == "bf16":
            self.to_bf16()
        elif precision != "fp32":
            raise ConfigError(f"unknown precision {precision!r}; expected fp32 or bf16")

    def to_bf16(self) -> ClapBackend:
        """Switch this backend to bf16, in place, and return it.

        The weights of linear and convolution layers become bf16 (half their memory, no
        per-call weight casts: 10 % faster than autocast over fp32 weights here); embeddings and
        norms stay fp32, and autocast keeps softmax, norms and reductions in fp32.
        """
        if self.device.type != "cpu" or not bf16_supported():
            raise ConfigError(
                "bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); use the torch or onnx backend"
            )
        torch = self._torch
        for module in self._model.modules():
            # embeddings stay fp32: summed in bf16 they cost the text tower most of its margin
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.to(torch.bfloat16)
        self.precision = "bf16"
        self.name = "torch-bf16"
        return self

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return self._torch.autocast("cpu", dtype=self._torch.bfloat16)
        return contextlib.nullcontext()

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """Audio embeddings from a batch of features (n, channels, frames, mels)."""
        torch = self._torch
        out = []
        for i in range(0, len(feats), self._run_size):
            x = torch.from_numpy(np.ascontiguousarray(feats[i : i + self._run_size]))
            x = x.to(self.device, self.dtype)
            # fixed policy: every window on the fusion path (ignored by unfused models)
            is_longer = torch.ones(x.shape[0], 1, dtype=torch.bool, device=self.device)
            with torch.inference_mode(), self._autocast():
                emb = self._model.get_audio_features(input_features=x, is_longer=is_longer).pooler_output
            out.append(_normalised(emb))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        torch = self._torch
        out = np.zeros((len(texts), self.dim), np.float32)
        for idx in length_buckets(self._tokenizer, texts, TEXT_BATCH):
            tokens = self._tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_text_tokens(self._tokenizer),
                return_tensors="pt",
            )
            tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode(), self._autocast():
                emb = self._model.get_text_features(**tokens).pooler_output
            out[idx] = _normalised(emb)
        return out


def length_buckets(tokenizer: Any, texts: Sequence[str], size: int) -> list[list[int]]:
    """Indices of ``texts`` in groups of ``size`` with similar token counts (less padding)."""
    lengths = [
        len(ids)
        for ids in tokenizer(list(texts), truncation=True, max_length=max_text_tokens(tokenizer))["input_ids"]
    ]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    return [order[i : i + size] for i in range(0, len(order), size)]


def bf16_supported() -> bool:
    """Whether this CPU does bf16 matmuls natively (else bf16 is emulated and slow)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old or unusual builds
        return False


def _normalised(emb: torch.Tensor) -> np.ndarray:
    x = emb.float().cpu().numpy()
    # the model normalises already; again in float32 so fp16/bf16 rounding does not leak
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def max_text_tokens(tokenizer: Any) -> int:
    """Longest token sequence the text tower takes (RoBERTa: 512)."""
    n = int(getattr(tokenizer, "model_max_length", 512) or 512)
    return min(n, 512)


def _pick_device(torch: Any, device: str | None) -> torch.device:
    want = (device or os.environ.get("EARMARK_DEVICE") or "auto").lower()
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")  # type: ignore[no-any-return]
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {want!r} asked for, but no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(want)  # type: ignore[no-any-return]
    except RuntimeError:
        raise ConfigError(f"unknown device {want!r}; expected auto, cpu, cuda or cuda:N") from None
