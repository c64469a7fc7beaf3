"""CLAP on PyTorch via transformers' ``ClapModel``: the only module that imports torch.

Determinism: transformers' ``ClapFeatureExtractor`` marks one *random* clip of a
batch as "longer" when none is, so with a fused checkpoint a clip's embedding
depends on the rest of its batch; and it picks random chunks of clips over
10 s. earmark never gives it more than one window, and always takes the fusion
path for fused models (``is_longer=True`` for every window). That is exactly
what a single-clip call of the transformers pipeline computes, and a window's
embedding no longer depends on what else is in the batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import ThreadpoolController

from .. import models
from ..errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["ClapBackend"]

log = logging.getLogger("earmark")


class ClapBackend:
    """A CLAP checkpoint on PyTorch.

    Args:
        model: alias, hub id or folder (see :func:`earmark.models.resolve`).
        device: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        threads: CPU threads for torch; default all cores.
        batch_size: most windows per forward pass.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        batch_size: int = 8,
    ) -> None:
        path = models.resolve(model)  # before importing torch: a missing model fails fast
        import torch
        import transformers
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        self.model_id = models.canonical(model or os.environ.get("EARMARK_MODEL") or models.DEFAULT_MODEL)
        self.path = path
        self.device = _pick_device(torch, device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        transformers.utils.logging.disable_progress_bar()
        try:
            self._model = ClapModel.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self._fe = ClapFeatureExtractor.from_pretrained(path)
        except (OSError, ValueError, KeyError, RuntimeError) as ex:
            raise ModelError(f"cannot load the CLAP model in {path}: {ex}") from None
        self.fused = bool(self._model.config.audio_config.enable_fusion)
        self.sample_rate = int(self._fe.sampling_rate)
        self.window_samples = int(self._fe.nb_max_samples)
        self.logit_scale = float(self._model.logit_scale_a.detach().float().exp())
        self.dim = int(self._model.config.projection_dim)
        self.batch_size = batch_size
        self._torch = torch
        # numpy's BLAS on one thread for feature extraction: measured here, OpenBLAS threads
        # spinning after the mel matmul make a call 30 % slower on 2 cores, and they compete
        # with torch's own threads.
        self._blas = ThreadpoolController()

    def features(self, window: np.ndarray) -> np.ndarray:
        """Log-mel features of one window, exactly as the single-clip reference computes them."""
        if window.size > self.window_samples:
            raise ValueError(f"a window holds at most {self.window_samples} samples, got {window.size}")
        # one window per call: the extractor's random "longer" pick only happens across a batch
        with self._blas.limit(limits=1, user_api="blas"):
            feats = self._fe(window, sampling_rate=self.sample_rate, return_tensors="np")
        return np.asarray(feats["input_features"][0], dtype=np.float32)

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """Audio embeddings from a batch of features (n, channels, frames, mels)."""
        torch = self._torch
        out = []
        for i in range(0, len(feats), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(feats[i : i + self.batch_size]))
            x = x.to(self.device, self.dtype)
            # fixed policy: every window on the fusion path (ignored by unfused models)
            is_longer = torch.ones(x.shape[0], 1, dtype=torch.bool, device=self.device)
            with torch.inference_mode():
                emb = self._model.get_audio_features(input_features=x, is_longer=is_longer).pooler_output
            out.append(_normalised(emb))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        if not len(windows):
            return np.zeros((0, self.dim), np.float32)
        return self.embed_features(np.stack([self.features(np.asarray(w)) for w in windows]))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        torch = self._torch
        tokens = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=_max_len(self._tokenizer), return_tensors="pt"
        )
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            emb = self._model.get_text_features(**tokens).pooler_output
        return _normalised(emb)


def _normalised(emb: torch.Tensor) -> np.ndarray:
    x = emb.float().cpu().numpy()
    # the model normalises already; again in float32 so fp16 rounding does not leak
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _max_len(tokenizer: Any) -> int:
    n = int(getattr(tokenizer, "model_max_length", 512) or 512)
    return min(n, 512)


def _pick_device(torch: Any, device: str | None) -> torch.device:
    want = (device or os.environ.get("EARMARK_DEVICE") or "auto").lower()
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {want!r} asked for, but no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(want)
    except RuntimeError:
        raise ConfigError(f"unknown device {want!r}; expected auto, cpu, cuda or cuda:N") from None
