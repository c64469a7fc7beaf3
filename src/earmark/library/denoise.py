"""Optional pre-processing: spectral-gating noise reduction (``noisereduce``) before embedding.

Off by default. When on, it is part of the embedding's key (``preprocess``)
and recorded per file, so denoised and plain embeddings never mix. The audio
is decoded whole here (noise profiles need the whole clip), so it is meant for
clips, not hour-long recordings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from .. import audio as _audio
from ..errors import MissingExtraError

if TYPE_CHECKING:
    from ..audio import Source
    from ..classify import Classifier

__all__ = ["PREPROCESS_NAME", "denoise", "denoised_chunks"]

PREPROCESS_NAME = "noisereduce"


def denoise(samples: np.ndarray, rate: int) -> np.ndarray:
    """Non-stationary spectral gating of mono float32 audio; same length and rate.

    Raises:
        MissingExtraError: ``noisereduce`` is not installed.
    """
    try:
        import noisereduce
    except ImportError:
        raise MissingExtraError("noise reduction (--denoise)", "tag") from None
    out = noisereduce.reduce_noise(y=samples, sr=rate, stationary=False, n_jobs=1)
    return np.asarray(out, dtype=np.float32)


def denoised_chunks(classifier: Classifier) -> Callable[[Source, str], Iterable[np.ndarray]]:
    """A ``decode`` for :func:`earmark.stage.embed_many`: the whole clip decoded, then denoised.

    The stage's decoding threads run it, so the next files are decoded and
    denoised while the model embeds the current one; windows and batches are
    the stage's, as without noise reduction.
    """
    rate = classifier.sample_rate

    def decode(source: Source, name: str) -> Iterable[np.ndarray]:
        return [denoise(_audio.decode(source, sample_rate=rate, limits=classifier.limits, name=name), rate)]

    return decode
