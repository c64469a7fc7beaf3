"""Search the library: text -> files, file -> files that sound alike.

The index is exact brute force over the stored float16 window embeddings,
kept as float16 (1 KB per 512-d window: 98 MB at 100 000 windows, 0.95 GB at
1 000 000; no float32 copy), rows grouped by file. A query is one
float16 matrix-vector product in PyTorch (AVX-512/F16C kernels, float32
accumulation), ``torch.topk`` over the window scores, then the best files in
window order; their scores are recomputed in float32 from their own windows.

Chosen by measurement (``bench/bench_duplicates.py``, ``bench/RESULTS.md``;
2 cores, 512-d, loaded machine): at 1 000 000 windows the float16 product takes
~125-160 ms and the whole query stays under 200 ms, while numpy has no float16
BLAS (converting blocks to float32 costs ~7 ms per 10 000 windows: 700 ms at
100 000), a float32 matrix doubles the memory (2 GB at 1 000 000), faiss'
scalar quantizers were slower at 100 000 (fp16 79 ms, 8-bit 56 ms vs 24 ms) and
add a dependency, and sqlite-vec cannot be loaded by the standard library's
``sqlite3`` on common builds (no ``enable_load_extension``). Exact search loses
no recall; an approximate index (IVF, HNSW) would only pay off at tens of
millions of windows. The index is rebuilt, streaming rows into a preallocated
float16 array (peak memory: the index plus one row), when embeddings or files
change.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..store import Database
from .records import embedding_from_row, model_key
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
    """All window embeddings of one model's tagged files (float16 or float32, rows grouped by file)."""

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
        self.matrix = np.ascontiguousarray(matrix)  # (windows, dim), unit rows
        self.hashes = hashes  # content hash per file
        counts = np.diff(np.append(offsets, len(matrix))).astype(np.int64)
        self.row_file = np.repeat(np.arange(len(file_ids), dtype=np.int32), counts)  # (windows,) file index

    @classmethod
    def load(cls, db: Database, model: str) -> WindowIndex:
        head = db.conn.execute(
            "SELECT count(*), coalesce(sum(e.n_windows), 0), max(e.dim) FROM lib_files f"
            " JOIN lib_embeddings e ON e.id=f.embedding_id WHERE e.model=? AND e.vectors IS NOT NULL",
            (model,),
        ).fetchone()
        n_files, n_windows, dim = int(head[0]), int(head[1]), int(head[2] or 1)
        matrix = np.empty((n_windows, dim), np.float16)
        spans = np.empty((n_windows, 2), np.float32)
        file_ids = np.empty(n_files, np.int64)
        offsets = np.empty(n_files, np.int64)
        hashes: list[str] = []
        row = k = 0
        for r in db.conn.execute(
            "SELECT f.id, f.content_hash, e.n_windows, e.dim, e.spans, e.vectors FROM lib_files f"
            " JOIN lib_embeddings e ON e.id=f.embedding_id WHERE e.model=? AND e.vectors IS NOT NULL"
            " ORDER BY f.id",
            (model,),
        ):
            n = int(r["n_windows"])
            if k >= n_files or row + n > n_windows or int(r["dim"]) != dim:
                break  # rows written since the count (the cached index is rebuilt on the next query)
            matrix[row : row + n] = np.frombuffer(r["vectors"], np.float16).reshape(n, dim)
            spans[row : row + n] = np.frombuffer(r["spans"], np.float32).reshape(n, 2)
            file_ids[k], offsets[k] = r["id"], row
            hashes.append(r["content_hash"])
            row, k = row + n, k + 1
        return cls(file_ids[:k], offsets[:k], spans[:row], matrix[:row], hashes)

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def _window_scores(self, vector: np.ndarray) -> Any:
        import torch

        m = torch.from_numpy(self.matrix)
        return m @ torch.from_numpy(np.ascontiguousarray(vector, dtype=self.matrix.dtype))

    def query(
        self, vector: np.ndarray, k: int, *, exclude_hash: str | None = None
    ) -> list[tuple[int, float, int]]:
        """Best ``k`` files for a query vector: ``(file_id, score, best_window_row)``, best first."""
        import torch

        if not len(self) or k <= 0:
            return []
        vector = np.asarray(vector, np.float32)
        scores = self._window_scores(vector)
        excluded = {i for i, h in enumerate(self.hashes) if h == exclude_hash} if exclude_hash else set()
        # the best files are the first distinct files in window order: widen until k of them are found
        m = min(len(self), 8 * k + 64)
        while True:
            top = torch.topk(scores, m).indices.numpy()
            files = list(dict.fromkeys(int(f) for f in self.row_file[top] if int(f) not in excluded))
            if len(files) >= k + 2 or m == len(self):
                break
            m = min(len(self), m * 4)
        ends = np.append(self.offsets[1:], len(self))
        out = []
        for i in files:  # exact float32 scores from each candidate file's own windows
            windows = self.matrix[self.offsets[i] : ends[i]].astype(np.float32)
            rows = windows @ vector / np.maximum(np.linalg.norm(windows, axis=1), 1e-12)
            best = int(np.argmax(rows))
            out.append((int(self.file_ids[i]), float(rows[best]), int(self.offsets[i]) + best))
        # ties broken by file id, so the same query always lists the same files
        out.sort(key=lambda t: (-t[1], t[0]))
        return out[:k]


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
    index = index_for(db, model_key(classifier.model_id))
    vector = classifier.text_embeddings([query], classifier.options.templates)[0]
    return _hits(db, index, index.query(vector, k))


def similar_to(db: Database, classifier: Classifier, target: int | str | Path, *, k: int = 20) -> list[Hit]:
    """Files that sound like ``target`` (a file id, or a path in the library or anywhere), best first.

    The query is the mean of the target's window embeddings; the file itself
    and byte-identical copies are left out.

    Raises:
        ConfigError: an unknown file id. AudioError: a new path that does not decode.
    """
    model = model_key(classifier.model_id)
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
