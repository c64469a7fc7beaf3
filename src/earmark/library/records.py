"""Reading and writing library rows: files, embeddings, predictions; the one embedding store.

``lib_embeddings`` is the one store of window embeddings: ``tag`` writes and
reads it, and so does ``eval`` (:mod:`earmark.evaluate.cache`), under one key
(:class:`EmbeddingKey`): the content hash of the bytes, the model
(:func:`model_key`: its name *and* fingerprint, which changes with its weights,
config or earmark's feature version, so a model replaced in the same folder
never reuses old vectors), window, hop and pre-processing.

Blobs: spans are float32 ``(windows, 2)`` seconds, vectors float16
``(windows, dim)`` (half the space, fine for search). Scores written when a
file is embedded come from the full-precision vectors; scores computed later
from the stored float16 vectors (new labels, a pack, ``eval`` from the store)
move a window's cosine by at most ~1e-3 and a probability by ~1e-3 (tests hold
it under 5e-3). Every function takes a connection so callers group writes into
one transaction per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..classify import AudioEmbedding
from ..types import ClassifyOptions, Prediction

if TYPE_CHECKING:
    from ..classify import Classifier

__all__ = [
    "EmbeddingKey",
    "classifier_key",
    "embedding_from_row",
    "find_embedding",
    "find_prediction",
    "labels_key",
    "model_key",
    "model_name",
    "save_embedding",
    "save_prediction",
]


@dataclass(frozen=True, kw_only=True)
class EmbeddingKey:
    """What makes two embeddings of the same bytes interchangeable."""

    model: str
    window_s: float
    hop_s: float
    preprocess: str = "none"


def model_key(model: str, fingerprint: str) -> str:
    """The model part of every key: its name (folders by absolute path, hub ids as given) and fingerprint.

    Args:
        model: the model's name.
        fingerprint: :func:`earmark.backends.identity.model_fingerprint` of its folder.
    """
    return f"{model_name(model)}#{fingerprint}"


def model_name(model: str) -> str:
    """A model's stable, loadable name: folders by absolute path, hub ids as given."""
    return os.path.abspath(model) if os.path.isdir(model) else model


def classifier_key(classifier: Classifier) -> str:
    """:func:`model_key` of a loaded classifier."""
    return model_key(classifier.model_id, classifier.backend.fingerprint)


def labels_key(
    key: EmbeddingKey, labels: tuple[str, ...], options: ClassifyOptions, *, pack: str | None = None
) -> str:
    """Hash of everything a prediction depends on besides the audio (label order does not matter).

    ``pack`` is the digest of the classifier pack that scores instead of label texts, if any.
    """
    parts = [
        key.model,
        key.window_s,
        key.hop_s,
        key.preprocess,
        sorted(labels),
        list(options.templates),
        options.aggregate,
    ]
    if pack is not None:  # appended only with a pack, so zero-shot keys of existing libraries stay valid
        parts.append(["pack", pack])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def find_embedding(conn: sqlite3.Connection, content_hash: str, key: EmbeddingKey) -> sqlite3.Row | None:
    return conn.execute(  # type: ignore[no-any-return]
        "SELECT * FROM lib_embeddings WHERE content_hash=? AND model=? AND window_s=? AND hop_s=? AND preprocess=?",
        (content_hash, key.model, key.window_s, key.hop_s, key.preprocess),
    ).fetchone()


def save_embedding(
    conn: sqlite3.Connection,
    content_hash: str,
    key: EmbeddingKey,
    emb: AudioEmbedding | None,
    error: str | None,
    *,
    embed_s: float | None = None,
) -> int:
    """Insert (or replace) the embedding or decode error of some content; returns its id.

    ``embed_s`` is how long decoding and embedding took (``eval`` reports it).
    """
    values: tuple[Any, ...] = (None,) * 6
    if emb is not None:
        spans = np.asarray(emb.spans_s, dtype=np.float32).reshape(-1, 2)
        vectors = np.asarray(emb.vectors, dtype=np.float16)
        values = (
            emb.duration_s,
            emb.sample_rate,
            len(spans),
            vectors.shape[1],
            spans.tobytes(),
            vectors.tobytes(),
        )
    conn.execute(
        "INSERT INTO lib_embeddings (content_hash, model, window_s, hop_s, preprocess, duration_s, sample_rate,"
        " n_windows, dim, spans, vectors, error, embed_s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (content_hash, model, window_s, hop_s, preprocess) DO UPDATE SET"
        " duration_s=excluded.duration_s, sample_rate=excluded.sample_rate, n_windows=excluded.n_windows,"
        " dim=excluded.dim, spans=excluded.spans, vectors=excluded.vectors, error=excluded.error,"
        " embed_s=excluded.embed_s",
        (content_hash, key.model, key.window_s, key.hop_s, key.preprocess, *values, error, embed_s),
    )
    row = find_embedding(conn, content_hash, key)
    assert row is not None
    # a replaced embedding invalidates the predictions made from the old one
    conn.execute("DELETE FROM lib_predictions WHERE embedding_id=?", (row["id"],))
    return int(row["id"])


def embedding_from_row(row: sqlite3.Row, source: str) -> AudioEmbedding:
    """The stored vectors as an :class:`AudioEmbedding` (float32, ready for ``Classifier.score``)."""
    n, dim = int(row["n_windows"]), int(row["dim"])
    spans = np.frombuffer(row["spans"], dtype=np.float32).reshape(n, 2)
    vectors = np.frombuffer(row["vectors"], dtype=np.float16).reshape(n, dim).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return AudioEmbedding(
        source=source,
        spans_s=tuple((float(a), float(b)) for a, b in spans),
        vectors=vectors,
        duration_s=float(row["duration_s"]),
        sample_rate=int(row["sample_rate"]),
    )


def find_prediction(conn: sqlite3.Connection, embedding_id: int, key: str) -> sqlite3.Row | None:
    return conn.execute(  # type: ignore[no-any-return]
        "SELECT * FROM lib_predictions WHERE embedding_id=? AND labels_key=?", (embedding_id, key)
    ).fetchone()


def save_prediction(conn: sqlite3.Connection, embedding_id: int, key: str, pred: Prediction) -> int:
    """Store a prediction's scores (best first) and per-window probabilities; returns its id."""
    scores = [[s.label, round(s.probability, 6), round(s.cosine, 6)] for s in pred.scores]
    windows = [[round(p, 5) for p in w.probabilities] for w in pred.windows]
    conn.execute(
        "INSERT OR REPLACE INTO lib_predictions (embedding_id, labels_key, labels, scores, top_label, top_score,"
        " window_probs) VALUES (?,?,?,?,?,?,?)",
        (
            embedding_id,
            key,
            json.dumps(list(pred.labels)),
            json.dumps(scores),
            pred.top.label,
            pred.top.probability,
            json.dumps(windows),
        ),
    )
    row = find_prediction(conn, embedding_id, key)
    assert row is not None
    return int(row["id"])
