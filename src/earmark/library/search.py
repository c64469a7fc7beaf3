"""Search the library: text -> files, file -> files that sound alike.

The index is exact brute force over the stored float16 window embeddings,
kept as float16 (1 KB per 512-d window: 98 MB at 100 000 windows, 0.95 GB at
1 000 000; no float32 copy), rows grouped by file. A query scores every
window, takes the best windows (``8k + 64``, widened until ``k`` distinct files
are among them; a file's best window is then among them too, so the per-file
maximum is exact), and re-scores those files' windows in float32.

The window scores come from faiss' ``IndexScalarQuantizer`` in ``QT_fp16``
whose codes *are* the float16 rows (the matrix is written straight into its
buffer: no second copy), or, without faiss, from a PyTorch float16
matrix-vector product. Chosen by measurement (``bench/bench_duplicates.py``,
``bench/RESULTS-duplicates.md``; 2 cores, 512-d, machine loaded by other work,
so CPU time per query is the steadier figure): at 1 000 000 windows faiss fp16
costs 72-75 ms of CPU per query on one thread, PyTorch float16 88-96 ms, faiss
8-bit quantisation 89 ms (half the memory, scores rounded to 8 bits), an
on-disk float16 memmap 158 ms (small process, same RAM as page cache), numpy
float32 197 ms with twice the memory (2 GB), numpy float16 converted in blocks
2.2 s (numpy has no float16 BLAS). sqlite-vec cannot be loaded by the standard
library's ``sqlite3`` on common builds (no ``enable_load_extension``). Exact search loses no recall; an approximate index
(IVF, HNSW) would only pay off at tens of millions of windows. The index is
rebuilt, streaming rows into its preallocated buffer (peak memory: the index
plus one row), when embeddings or files change.
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
        self.faiss_index: Any = None  # set by load(): its codes are ``matrix``
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
        matrix, faiss_index = _storage(n_windows, dim)
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
        index = cls(file_ids[:k], offsets[:k], spans[:row], matrix[:row], hashes)
        if faiss_index is not None and row == n_windows:
            index.faiss_index = faiss_index  # keeps the buffer ``matrix`` views alive
        elif faiss_index is not None:
            index.matrix = np.array(matrix[:row])  # a short read: own copy, faiss index dropped
        return index

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def _best_windows(self, vector: np.ndarray, m: int) -> np.ndarray:
        """Rows of the ``m`` best-scoring windows, best first."""
        if self.faiss_index is not None:
            _, rows = self.faiss_index.search(vector[None, :], m)
            return np.asarray(rows[0][rows[0] >= 0])
        import torch

        scores = torch.from_numpy(self.matrix) @ torch.from_numpy(vector.astype(self.matrix.dtype))
        return torch.topk(scores, m).indices.numpy()

    def query(
        self, vector: np.ndarray, k: int, *, exclude_hash: str | None = None
    ) -> list[tuple[int, float, int]]:
        """Best ``k`` files for a query vector: ``(file_id, score, best_window_row)``, best first."""
        if not len(self) or k <= 0:
            return []
        vector = np.ascontiguousarray(vector, np.float32)
        excluded = {i for i, h in enumerate(self.hashes) if h == exclude_hash} if exclude_hash else set()
        # the best files are the first distinct files in window order: widen until k of them are found
        m = min(len(self), 8 * k + 64)
        while True:
            top = self._best_windows(vector, m)
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


def _storage(windows: int, dim: int) -> tuple[np.ndarray, Any]:
    """A float16 ``(windows, dim)`` array to fill, and the faiss index whose codes it is (or None)."""
    try:
        import faiss
    except ImportError:
        return np.empty((windows, dim), np.float16), None
    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    if windows == 0 or index.code_size != 2 * dim:
        return np.empty((windows, dim), np.float16), None
    index.codes.resize(windows * index.code_size)
    index.ntotal = windows
    buffer = faiss.rev_swig_ptr(index.codes.data(), windows * index.code_size)
    return buffer.view(np.float16).reshape(windows, dim), index


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
