"""Search the library: text -> files, file -> files that sound alike.

The index is exact brute force in numpy: every stored window embedding of one
model as a float32 matrix in memory, rows grouped by file; a query is one
matrix-vector product, a per-file max (``np.maximum.reduceat``) and a partial
sort. Chosen by measurement (``bench/bench_tag.py``, ``bench/RESULTS-library.md``):
at 100 000 windows of 512 dims on 2 cores a query takes 3.7 ms (median), faiss
``IndexFlatIP`` 10.5 ms, and sqlite-vec cannot even be loaded by the standard
library's ``sqlite3`` on common builds (no ``enable_load_extension``). Exact
search needs no extra dependency and loses no recall; an approximate index would
only pay off at tens of millions of windows. Memory is 2 KB per window (195 MB
at 100 000). The matrix is rebuilt (1.2 s at 100 000) when embeddings or files
change.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..store import Database
from .records import classifier_key, embedding_from_row
from .scan import content_hash
from .schema import migrate

if TYPE_CHECKING:
    from ..classify import Classifier

__all__ = ["Hit", "WindowIndex", "index_for", "search_text", "similar_to"]


@dataclass(frozen=True, kw_only=True)
class Hit:
    """One file found: its best window and that window's cosine similarity to the query."""

    file_id: int
    path: str
    score: float
    start_s: float
    end_s: float
    top_label: str | None
    status: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "file_id": self.file_id,
            "path": self.path,
            "score": round(self.score, 5),
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "top_label": self.top_label,
            "status": self.status,
        }


class WindowIndex:
    """All window embeddings of one model's tagged files (float32, rows grouped by file)."""

    def __init__(
        self,
        file_ids: np.ndarray,
        offsets: np.ndarray,
        spans: np.ndarray,
        matrix: np.ndarray,
        hashes: list[str],
    ) -> None:
        self.file_ids = file_ids  # (files,)
        self.offsets = offsets  # (files,) first row of each file
        self.spans = spans  # (windows, 2) seconds
        self.matrix = matrix  # (windows, dim)
        self.hashes = hashes  # content hash per file

    @classmethod
    def load(cls, db: Database, model: str) -> WindowIndex:
        rows = db.conn.execute(
            "SELECT f.id, f.content_hash, e.n_windows, e.dim, e.spans, e.vectors FROM lib_files f"
            " JOIN lib_embeddings e ON e.id=f.embedding_id WHERE e.model=? AND e.vectors IS NOT NULL"
            " ORDER BY f.id",
            (model,),
        ).fetchall()
        if not rows:
            return cls(
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                np.zeros((0, 2), np.float32),
                np.zeros((0, 1), np.float32),
                [],
            )
        counts = np.array([r["n_windows"] for r in rows])
        dim = int(rows[0]["dim"])
        matrix = np.frombuffer(b"".join(r["vectors"] for r in rows), np.float16).reshape(-1, dim)
        matrix = matrix.astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        spans = np.frombuffer(b"".join(r["spans"] for r in rows), np.float32).reshape(-1, 2)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return cls(
            np.array([r["id"] for r in rows]), offsets, spans, matrix, [r["content_hash"] for r in rows]
        )

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def query(
        self, vector: np.ndarray, k: int, *, exclude_hash: str | None = None
    ) -> list[tuple[int, float, int]]:
        """Best ``k`` files for a query vector: ``(file_id, score, best_window_row)``, best first."""
        if not len(self):
            return []
        scores = self.matrix @ np.asarray(vector, np.float32)
        per_file = np.maximum.reduceat(scores, self.offsets)
        if exclude_hash is not None:
            per_file[[i for i, h in enumerate(self.hashes) if h == exclude_hash]] = -np.inf
        k = min(k, per_file.size)
        candidates = np.argpartition(-per_file, k - 1)[:k]
        # ties broken by file id, so the same query always lists the same files
        top = sorted(candidates, key=lambda i: (-per_file[i], self.file_ids[i]))
        ends = np.append(self.offsets[1:], len(self))
        out = []
        for i in top:
            if not np.isfinite(per_file[i]):
                continue
            best = int(self.offsets[i] + np.argmax(scores[self.offsets[i] : ends[i]]))
            out.append((int(self.file_ids[i]), float(per_file[i]), best))
        return out


_cache: dict[tuple[str, str], tuple[tuple[object, ...], WindowIndex]] = {}
_cache_lock = threading.Lock()


def index_for(db: Database, model: str) -> WindowIndex:
    """The index of ``model``'s windows in ``db``, cached until embeddings or files change."""
    migrate(db)
    version = tuple(
        db.conn.execute(
            "SELECT (SELECT max(id) FROM lib_embeddings), (SELECT count(*) FROM lib_embeddings),"
            " (SELECT max(updated_at) FROM lib_files), (SELECT count(*) FROM lib_files)"
        ).fetchone()
    )
    key = (str(db.path), model)
    with _cache_lock:
        hit = _cache.get(key)
        if hit and hit[0] == version:
            return hit[1]
    index = WindowIndex.load(db, model)
    with _cache_lock:
        _cache[key] = (version, index)
    return index


def _hits(db: Database, index: WindowIndex, found: list[tuple[int, float, int]]) -> list[Hit]:
    hits = []
    for file_id, score, row in found:
        f = db.conn.execute(
            "SELECT path, top_label, status, review_label FROM lib_files WHERE id=?", (file_id,)
        ).fetchone()
        start, end = index.spans[row]
        hits.append(
            Hit(
                file_id=file_id,
                path=f["path"],
                score=score,
                start_s=float(start),
                end_s=float(end),
                top_label=f["review_label"] or f["top_label"],
                status=f["status"],
            )
        )
    return hits


def search_text(db: Database, classifier: Classifier, query: str, *, k: int = 20) -> list[Hit]:
    """Files whose best window matches a text description, best first.

    Args:
        db: the library database.
        classifier: its model embeds the query (must be the model the files were tagged with).
        query: free text, e.g. ``"glass breaking"``.
        k: how many files.

    Raises:
        ConfigError: an empty query.
    """
    query = " ".join(query.split())
    if not query:
        raise ConfigError("the search text is empty")
    index = index_for(db, classifier_key(classifier))
    vector = classifier.text_embeddings([query], classifier.options.templates)[0]
    return _hits(db, index, index.query(vector, k))


def similar_to(db: Database, classifier: Classifier, target: int | str | Path, *, k: int = 20) -> list[Hit]:
    """Files that sound like ``target`` (a file id, or a path in the library or anywhere), best first.

    The query is the mean of the target's window embeddings; the file itself
    and byte-identical copies are left out.

    Raises:
        ConfigError: an unknown file id. AudioError: a new path that does not decode.
    """
    model = classifier_key(classifier)
    index = index_for(db, model)
    row = _stored(db, target, model)
    if row is not None:
        vectors, digest = embedding_from_row(row, str(target)).vectors, row["content_hash"]
    elif isinstance(target, int):
        raise ConfigError(f"file {target} has no embedding for model {model} in {db.path}")
    else:
        vectors, digest = classifier.embed(target).vectors, content_hash(target)
    mean = vectors.mean(axis=0)
    return _hits(db, index, index.query(mean / np.linalg.norm(mean), k, exclude_hash=digest))


def _stored(db: Database, target: int | str | Path, model: str) -> sqlite3.Row | None:
    col, value = ("f.id", target) if isinstance(target, int) else ("f.path", os.path.abspath(target))
    return db.conn.execute(  # type: ignore[no-any-return]
        "SELECT e.*, f.content_hash FROM lib_files f JOIN lib_embeddings e ON e.id=f.embedding_id"
        f" WHERE {col}=? AND e.model=? AND e.vectors IS NOT NULL",
        (value, model),
    ).fetchone()
