"""Embeddings for evaluation and fitting, through the one embedding store: decoded and encoded once.

Window embeddings live in the library's store (``lib_embeddings``, see
:mod:`earmark.library.records`), under the same key ``tag`` uses:

- the SHA-256 of the file's bytes (a renamed or copied file is still a hit,
  an edited one is not),
- the model's name and fingerprint (weights digest, config, earmark's feature
  version), so a model replaced in the same folder misses,
- the window and hop lengths (no pre-processing).

So a second ``earmark eval`` with other labels or templates, an ``earmark fit``
on the same files, or an eval of files ``earmark tag`` already embedded in the
same database reads vectors instead of running the model. Stored vectors are
float16; scores from them may differ from freshly embedded ones by ~1e-3 in
probability (see :mod:`earmark.library.records`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..classify import AudioEmbedding
from ..errors import AudioError
from ..library import records
from ..library.scan import content_hash
from ..library.schema import migrate
from ..stage import embed_many
from ..store import Database, Migration

if TYPE_CHECKING:
    from ..classify import Classifier
    from ..types import ClassifyOptions

__all__ = ["MIGRATIONS", "Embedded", "EmbeddingCache", "embed_files", "model_key"]

log = logging.getLogger("earmark")


def _drop_old_table(conn: sqlite3.Connection) -> None:
    # eval kept its own float32 table before the one store; its rows are re-embedded once
    conn.execute("DROP TABLE IF EXISTS eval_embeddings")


MIGRATIONS = [Migration("eval-002-one-embedding-store", _drop_old_table)]


def model_key(classifier: Classifier) -> str:
    """The model part of the store's key (the same as ``tag``'s): name and fingerprint."""
    return records.classifier_key(classifier)


class EmbeddingCache:
    """Window embeddings by (content hash, model key, window, hop) in the one store.

    Args:
        db: the database (default: ``$EARMARK_HOME/earmark.db``, the one ``tag`` uses by default).
    """

    def __init__(self, db: Database | None = None) -> None:
        self.db = migrate(db or Database())
        self.db.migrate(MIGRATIONS)

    def get(self, content_hash: str, model: str, window_s: float, hop_s: float, name: str) -> Embedded | None:
        """The stored embedding (named ``name``), or ``None`` (also for a stored decode error)."""
        key = records.EmbeddingKey(model=model, window_s=window_s, hop_s=hop_s)
        row = records.find_embedding(self.db.conn, content_hash, key)
        if row is None or row["vectors"] is None:
            return None
        emb = records.embedding_from_row(row, name)
        return Embedded(path=name, result=emb, seconds=float(row["embed_s"] or 0.0), cached=True)

    def put(self, content_hash: str, model: str, window_s: float, hop_s: float, item: Embedded) -> None:
        """Store one embedding (replacing an older one under the same key)."""
        assert isinstance(item.result, AudioEmbedding)
        key = records.EmbeddingKey(model=model, window_s=window_s, hop_s=hop_s)
        with self.db.transaction() as c:
            records.save_embedding(c, content_hash, key, item.result, None, embed_s=item.seconds)


@dataclass(frozen=True, kw_only=True)
class Embedded:
    """One file's embedding (or the error that stopped it).

    Attributes:
        path: the file.
        result: its window embeddings, or the :class:`AudioError`.
        seconds: wall time to decode and embed it (as first measured, for cached ones).
        cached: whether it came from the cache.
    """

    path: str
    result: AudioEmbedding | AudioError
    seconds: float
    cached: bool


def embed_files(
    classifier: Classifier,
    paths: Sequence[str],
    *,
    options: ClassifyOptions | None = None,
    cache: EmbeddingCache | None = None,
) -> Iterator[Embedded]:
    """Embed files through the cache, in input order.

    Cache misses go through :func:`earmark.stage.embed_many` and are stored.
    An unreadable file yields its error (never cached) and the rest go on.

    Args:
        classifier: the model.
        paths: audio files.
        options: window and hop (default: the classifier's).
        cache: where embeddings are kept; ``None`` embeds everything.
    """
    opts = options or classifier.options
    key = model_key(classifier) if cache else ""
    hashes: dict[str, str] = {}
    hits: dict[str, Embedded] = {}
    for path in paths:
        if cache is None:
            break
        try:
            hashes[path] = content_hash(path)
        except OSError as ex:
            hits[path] = Embedded(
                path=path, result=AudioError(path, ex.strerror or str(ex)), seconds=0.0, cached=False
            )
            continue
        found = cache.get(hashes[path], key, opts.window_s, opts.hop_s, path)
        if found is not None:
            hits[path] = found
    misses = embed_many(classifier, [p for p in paths if p not in hits], options=opts)
    for path in paths:
        if path in hits:
            yield hits[path]
            continue
        start = time.perf_counter()
        _, result = next(misses)
        item = Embedded(path=path, result=result, seconds=time.perf_counter() - start, cached=False)
        if cache is not None and isinstance(result, AudioEmbedding):
            cache.put(hashes[path], key, opts.window_s, opts.hop_s, item)
        yield item
