"""Embedding cache for evaluation and fitting: audio is decoded and encoded once.

Window embeddings are stored in the earmark SQLite file (table
``eval_embeddings``, migrations ``eval-NNN-...``) keyed by

- the SHA-256 of the file's bytes (a renamed or copied file is still a hit,
  an edited one is not),
- the model: its id plus a fingerprint of what it computes (a text embedding
  of a fixed probe), so a retrained model in the same folder misses,
- the window and hop lengths.

So a second ``earmark eval`` with other labels or templates, or an ``earmark
fit`` on the same files, reads vectors instead of running the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..classify import AudioEmbedding
from ..errors import AudioError
from ..stage import embed_many
from ..store import Database, Migration

if TYPE_CHECKING:
    from ..classify import Classifier
    from ..types import ClassifyOptions

__all__ = ["MIGRATIONS", "Embedded", "EmbeddingCache", "embed_files", "model_key"]

log = logging.getLogger("earmark")


def _create(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE eval_embeddings (
            content_hash TEXT NOT NULL,
            model TEXT NOT NULL,
            window_s REAL NOT NULL,
            hop_s REAL NOT NULL,
            dim INTEGER NOT NULL,
            vectors BLOB NOT NULL,
            spans TEXT NOT NULL,
            duration_s REAL NOT NULL,
            sample_rate INTEGER NOT NULL,
            embed_s REAL NOT NULL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            PRIMARY KEY (content_hash, model, window_s, hop_s)
        )"""
    )


MIGRATIONS = [Migration("eval-001-embeddings", _create)]

_PROBE = "earmark embedding cache probe"


def model_key(classifier: Classifier) -> str:
    """Model id plus a fingerprint of its text tower's output on a fixed probe."""
    vec = classifier.text_embeddings([_PROBE], ("{label}",))[0]
    digest = hashlib.sha256(np.round(vec.astype(np.float64), 4).tobytes()).hexdigest()[:16]
    return f"{classifier.model_id}#{digest}"


def file_hash(path: str) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class EmbeddingCache:
    """Window embeddings by (content hash, model key, window, hop) in a SQLite file.

    Args:
        db: the database (default: ``$EARMARK_HOME/earmark.db``).
    """

    def __init__(self, db: Database | None = None) -> None:
        self.db = db or Database()
        self.db.migrate(MIGRATIONS)

    def get(self, content_hash: str, model: str, window_s: float, hop_s: float, name: str) -> Embedded | None:
        """The stored embedding (named ``name``), or ``None``."""
        row = self.db.conn.execute(
            "SELECT dim, vectors, spans, duration_s, sample_rate, embed_s FROM eval_embeddings"
            " WHERE content_hash=? AND model=? AND window_s=? AND hop_s=?",
            (content_hash, model, window_s, hop_s),
        ).fetchone()
        if row is None:
            return None
        vectors = np.frombuffer(row["vectors"], dtype="<f4").reshape(-1, row["dim"]).astype(np.float32)
        emb = AudioEmbedding(
            source=name,
            spans_s=tuple((float(a), float(b)) for a, b in json.loads(row["spans"])),
            vectors=vectors,
            duration_s=float(row["duration_s"]),
            sample_rate=int(row["sample_rate"]),
        )
        return Embedded(path=name, result=emb, seconds=float(row["embed_s"]), cached=True)

    def put(self, content_hash: str, model: str, window_s: float, hop_s: float, item: Embedded) -> None:
        """Store one embedding (replacing an older one under the same key)."""
        emb = item.result
        assert isinstance(emb, AudioEmbedding)
        with self.db.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO eval_embeddings (content_hash, model, window_s, hop_s, dim, vectors,"
                " spans, duration_s, sample_rate, embed_s) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    content_hash,
                    model,
                    window_s,
                    hop_s,
                    int(emb.vectors.shape[1]),
                    np.ascontiguousarray(emb.vectors, dtype="<f4").tobytes(),
                    json.dumps(emb.spans_s),
                    emb.duration_s,
                    emb.sample_rate,
                    item.seconds,
                ),
            )


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
            hashes[path] = file_hash(path)
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
