"""Embedding many sources: the loop that tagging, evaluation and batch classify share.

``embed_many`` yields ``(source, AudioEmbedding | AudioError)`` in input order,
so callers never depend on scheduling. A bad source yields its error and the
rest go on. (First version: sequential. Overlapping decode with the model is
the performance work's job and must keep this signature and ordering.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .errors import AudioError

if TYPE_CHECKING:
    from .audio import Source
    from .classify import AudioEmbedding, Classifier
    from .types import ClassifyOptions

__all__ = ["embed_many"]


def embed_many(
    classifier: Classifier,
    sources: Iterable[Source],
    *,
    options: ClassifyOptions | None = None,
) -> Iterator[tuple[Source, AudioEmbedding | AudioError]]:
    """Embed each source's windows; yields results in input order.

    Args:
        classifier: supplies the backend, options and audio limits.
        sources: paths, bytes or file objects.
        options: window/hop settings (default: the classifier's).
    """
    for source in sources:
        try:
            yield source, classifier.embed(source, options=options)
        except AudioError as ex:
            yield source, ex
