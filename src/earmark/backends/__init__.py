"""The model interface: one small protocol, implemented once per runtime.

A backend turns fixed-length audio windows and texts into L2-normalised
embeddings. Batching, caching and scoring are written once on top of it
(:mod:`earmark.classify`). Backends are imported lazily: naming one here costs
nothing until it is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = ["BACKENDS", "Backend", "backend_name", "get_backend"]


@runtime_checkable
class Backend(Protocol):
    """What earmark needs from a model.

    Attributes:
        model_id: the model's name (hub id or folder), part of every cache key.
        sample_rate: audio rate the model expects, in Hz.
        window_samples: samples one forward pass sees (10 s for CLAP).
        logit_scale: multiplier from cosine similarity to softmax logits.
    """

    model_id: str
    sample_rate: int
    window_samples: int
    logit_scale: float

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32, L2-normalised; each window has at most ``window_samples`` samples.

        A window's embedding does not depend on the other windows in the call.
        """
        ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised."""
        ...


def _torch(**kwargs: Any) -> Backend:
    from .clap import ClapBackend

    return ClapBackend(**kwargs)


def _torch_bf16(**kwargs: Any) -> Backend:
    from .clap import ClapBackend

    return ClapBackend(precision="bf16", **kwargs)


def _onnx(**kwargs: Any) -> Backend:
    from .onnx import OnnxBackend

    return OnnxBackend(**kwargs)


def _onnx_int8(**kwargs: Any) -> Backend:
    from .onnx import OnnxBackend

    return OnnxBackend(int8=True, **kwargs)


def _openvino(**kwargs: Any) -> Backend:
    from .openvino import OpenVinoBackend

    return OpenVinoBackend(**kwargs)


def _openvino_bf16(**kwargs: Any) -> Backend:
    from .openvino import OpenVinoBackend

    return OpenVinoBackend(precision="bf16", **kwargs)


def _openvino_f16(**kwargs: Any) -> Backend:
    from .openvino import OpenVinoBackend

    return OpenVinoBackend(precision="f16", **kwargs)


def _auto(**kwargs: Any) -> Backend:
    from .select import auto_backend

    return auto_backend(**kwargs)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "auto": _auto,
    "torch": _torch,
    "torch-bf16": _torch_bf16,
    "onnx": _onnx,
    "onnx-int8": _onnx_int8,
    "openvino": _openvino,
    "openvino-bf16": _openvino_bf16,
    "openvino-f16": _openvino_f16,
}


def backend_name(name: str | None = None) -> str:
    """The backend asked for: ``name``, else ``$EARMARK_BACKEND``, else ``auto``."""
    return (name or os.environ.get("EARMARK_BACKEND") or "auto").strip().lower()


def get_backend(name: str | None = None, **kwargs: Any) -> Backend:
    """Create a backend by name (see :data:`BACKENDS`), passing ``kwargs`` to it.

    Args:
        name: a key of :data:`BACKENDS`; default ``$EARMARK_BACKEND`` or ``auto``.
        kwargs: ``model``, ``device``, ``threads``, ``batch_size``.
    """
    key = backend_name(name)
    try:
        factory = BACKENDS[key]
    except KeyError:
        raise ConfigError(f"unknown backend {key!r}; expected one of: {', '.join(BACKENDS)}") from None
    return factory(**kwargs)
