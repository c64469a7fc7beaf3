"""Label embeddings kept on disk, so a restart with known labels never loads the text tower.

One SQLite file, ``$EARMARK_HOME/cache/labels.sqlite``, holds each label's
embedding keyed by the model's fingerprint (its files, see
:func:`earmark.backends.artifacts.fingerprint`), the kind of backend (``exact``
for PyTorch fp32, ONNX Runtime fp32 and OpenVINO f32, which agree within 1e-6;
otherwise the backend's name, e.g. ``onnx-int8``), the prompt template and the
label. The text tower (~500 MB for the full-size model) is then loaded only for
labels never seen on this machine. Imports numpy and sqlite3 only; any error
reading or writing the file is logged and the cache is skipped, never fatal.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import paths

__all__ = ["LabelCache", "for_backend"]

log = logging.getLogger("earmark")

EXACT_BACKENDS = ("torch", "onnx", "openvino")
Key = tuple[str, str]  # (template, label)


def _kind(backend: Any) -> str:
    name = str(getattr(backend, "name", "") or "")
    dtype = str(getattr(backend, "dtype", "float32"))
    return "exact" if name in EXACT_BACKENDS and dtype.endswith("float32") else name or "unknown"


def for_backend(backend: Any) -> LabelCache | None:
    """The on-disk cache for ``backend``'s model, or ``None`` when its model folder is unknown."""
    path = getattr(backend, "path", None)
    if path is None:
        return None
    from .backends.artifacts import fingerprint

    try:
        # "-p1": vectors made one prompt per call (Classifier.text_embeddings), never reused from batches
        model = f"{Path(str(path)).name}-{fingerprint(Path(str(path)))}-p1"
    except OSError:
        return None
    return LabelCache(model, _kind(backend))


class LabelCache:
    """Label embeddings of one model and backend kind on disk.

    Args:
        model: the model's fingerprint (name and content hash).
        kind: ``exact`` or the name of an approximate backend.
        file: the SQLite file (default ``$EARMARK_HOME/cache/labels.sqlite``).
    """

    def __init__(self, model: str, kind: str, file: Path | None = None) -> None:
        self.model, self.kind = model, kind
        self.file = file or paths.earmark_home() / "cache" / "labels.sqlite"
        self._lock = threading.Lock()
        self._ready = False
        self.hits = 0
        self.misses = 0

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.file, timeout=10)
        if not self._ready:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(
                "CREATE TABLE IF NOT EXISTS labels (model TEXT, kind TEXT, template TEXT, label TEXT,"
                " vec BLOB, PRIMARY KEY (model, kind, template, label))"
            )
            self._ready = True
        return con

    def get(self, keys: Sequence[Key]) -> dict[Key, np.ndarray]:
        """The stored embeddings of those ``(template, label)`` keys that are stored."""
        if not keys:
            return {}
        found: dict[Key, np.ndarray] = {}
        try:
            with self._lock:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                con = self._connect()
                try:
                    for t, label in keys:
                        row = con.execute(
                            "SELECT vec FROM labels WHERE model=? AND kind=? AND template=? AND label=?",
                            (self.model, self.kind, t, label),
                        ).fetchone()
                        if row is not None:
                            found[(t, label)] = np.frombuffer(row[0], dtype=np.float32).copy()
                finally:
                    con.close()
        except (sqlite3.Error, OSError) as ex:
            log.debug("label cache not read: %s", ex)
            return {}
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put(self, items: Iterable[tuple[Key, np.ndarray]]) -> None:
        """Store embeddings (float32) under their ``(template, label)`` keys."""
        rows = [
            (self.model, self.kind, t, label, np.asarray(v, np.float32).tobytes()) for (t, label), v in items
        ]
        if not rows:
            return
        try:
            with self._lock:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                con = self._connect()
                try:
                    with con:
                        con.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?)", rows)
                finally:
                    con.close()
        except (sqlite3.Error, OSError) as ex:
            log.debug("label cache not written: %s", ex)
