"""Optional pre-processing: spectral-gating noise reduction (``noisereduce``) before embedding.

Off by default. When on, it is part of the embedding's key (``preprocess``)
and recorded per file, so denoised and plain embeddings never mix. The audio
is decoded whole here (noise profiles need the whole clip), so it is meant for
clips, not hour-long recordings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .. import audio as _audio
from ..errors import AudioError, MissingExtraError
from .scan import ordered_map

if TYPE_CHECKING:
    from ..classify import AudioEmbedding, Classifier
    from ..types import ClassifyOptions

__all__ = ["PREPROCESS_NAME", "denoise", "embed_denoised"]

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


def _load(path: str, rate: int, limits: _audio.AudioLimits) -> np.ndarray | AudioError:
    try:
        return denoise(_audio.decode(path, sample_rate=rate, limits=limits), rate)
    except AudioError as ex:
        return ex


def embed_denoised(
    classifier: Classifier, paths: Iterable[str], *, options: ClassifyOptions | None = None
) -> Iterator[tuple[str, AudioEmbedding | AudioError]]:
    """Like :func:`earmark.stage.embed_many`, with noise reduction between decoding and the model.

    Decoding and denoising of the next file run in a worker thread while the
    model embeds the current one; results come in input order.
    """
    rate = classifier.sample_rate
    paths = list(paths)
    loaded = ordered_map(lambda p: _load(p, rate, classifier.limits), paths, workers=1, ahead=2)
    for path, samples in zip(paths, loaded, strict=False):
        if isinstance(samples, AudioError):
            yield path, samples
            continue
        try:
            yield path, classifier.embed(samples, input_rate=rate, name=path, options=options)
        except AudioError as ex:
            yield path, ex
