"""The model interface: one small protocol, implemented once per runtime.

A backend turns fixed-length audio windows and texts into L2-normalised
embeddings. Batching, caching and scoring are written once on top of it
(:mod:`earmark.classify`). Backends are imported lazily: naming one here costs
nothing until it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = ["BACKENDS", "Backend", "get_backend"]


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


def _clap(**kwargs: Any) -> Backend:
    from .clap import ClapBackend

    return ClapBackend(**kwargs)


BACKENDS: dict[str, Callable[..., Backend]] = {"torch": _clap}


def get_backend(name: str = "torch", **kwargs: Any) -> Backend:
    """Create a backend by name (``torch``), passing ``kwargs`` to it."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}") from None
    return factory(**kwargs)
