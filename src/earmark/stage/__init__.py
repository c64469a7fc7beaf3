"""The one windows -> batches -> embeddings stage, used by every surface.

::

    source (path, bytes, array, upload, live stream)
      -> audio.stream: float32 mono chunks at the model's rate
      -> windows.WindowCutter: the one window policy (10 s / hop, short inputs and tails)
      -> backend.window_features, in the producer's thread (overlaps the model)
      -> batches.ModelRunner: fixed-shape model calls (backend.batch_size rows, padded),
         backend.streams calls at once, max wait for live use
      -> AudioEmbedding (window spans + L2-normalised vectors) -> scoring

``Classifier.classify``/``embed`` use :func:`embed_source`; ``classify_many``,
``earmark classify DIR``, ``tag`` and ``eval`` use :func:`embed_many`; the
server submits decoded uploads with :func:`submit_chunks`; the monitor cuts
live streams with :class:`WindowCutter` and submits to the same runner. See
``docs/architecture.md``.
"""

from __future__ import annotations

from .batches import BatchPolicy, ModelRunner
from .embed import AudioEmbedding, Pending, embed_many, embed_source, submit_chunks
from .windows import WindowCutter, iter_windows, window_spans

__all__ = [
    "AudioEmbedding",
    "BatchPolicy",
    "ModelRunner",
    "Pending",
    "WindowCutter",
    "embed_many",
    "embed_source",
    "iter_windows",
    "submit_chunks",
    "window_spans",
]
