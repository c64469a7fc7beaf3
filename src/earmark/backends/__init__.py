"""The model interface: one small protocol, implemented once per runtime.

A backend turns fixed-length audio windows and texts into L2-normalised
embeddings. Windows, batching and the overlap of decoding with the model are
written once on top of it (:mod:`earmark.stage`), scoring once in
:mod:`earmark.classify`. Backends are imported lazily: naming one here costs
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
    """Everything earmark's stage, scoring and server use of a model; nothing is probed with getattr.

    The stage (:mod:`earmark.stage`) computes features with :meth:`window_features` in
    decoding threads and runs :meth:`embed_features` on batches of exactly
    :attr:`batch_size` rows (padded), up to :attr:`streams` calls at once.

    Attributes:
        model_id: the model's name (hub id or folder), for people and results.
        fingerprint: what the model computes (weights digest, config, earmark's feature
            version; :func:`earmark.backends.identity.model_fingerprint`): the key of every
            cache of derived data.
        sample_rate: audio rate the model expects, in Hz.
        window_samples: samples one forward pass sees (10 s for CLAP).
        logit_scale: multiplier from cosine similarity to softmax logits.
        batch_size: windows per model call. The stage pads every call to exactly this many
            rows, so a window's embedding never depends on what it is batched with.
        streams: model calls that may run at once (1 for PyTorch and ONNX Runtime). Above 1,
            :meth:`embed_features` must be safe to call from that many threads together.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def window_samples(self) -> int: ...

    @property
    def logit_scale(self) -> float: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def streams(self) -> int: ...

    def window_features(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Model input of each window: ``(n, ...)`` float32, no model involved; thread-safe.

        Each window holds 1 to ``window_samples`` samples at ``sample_rate`` (shorter ones
        are padded the way the reference pads short clips). A window's features never
        depend on the other windows.
        """
        ...

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """(n, dim) float32, L2-normalised, from a batch of :meth:`window_features` rows."""
        ...

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32, L2-normalised: ``embed_features(window_features(windows))``.

        A window's embedding does not depend on the other windows in a call of the same size.
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


def get_backend(name: str | None = None, *, throughput: bool = False, **kwargs: Any) -> Backend:
    """Create a backend by name (see :data:`BACKENDS`), passing ``kwargs`` to it.

    Args:
        name: a key of :data:`BACKENDS`; default ``$EARMARK_BACKEND`` or ``auto``.
        throughput: the caller keeps several windows in flight (tag, serve, eval, monitor):
            a backend that can run calls at once (OpenVINO) splits its threads into two
            streams. Default: every thread on one call, the fastest lone clip.
        kwargs: ``model``, ``device``, ``threads``, ``batch_size``.
    """
    key = backend_name(name)
    try:
        factory = BACKENDS[key]
    except KeyError:
        raise ConfigError(f"unknown backend {key!r}; expected one of: {', '.join(BACKENDS)}") from None
    if key == "auto" or key.startswith("openvino"):
        kwargs["throughput"] = throughput
    return factory(**kwargs)
