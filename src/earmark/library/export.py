"""``earmark export``: the library as CSV, JSON Lines or Parquet.

One row per file (path, facts, status, labels and all scores), or with
``windows=True`` one row per analysis window (its span and per-label
probabilities). Scores are a JSON object in CSV and Parquet (label sets can
differ between files), a real object in JSON Lines.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from ..errors import ConfigError, MissingExtraError
from ..store import Database
from .schema import migrate

__all__ = ["FORMATS", "export", "file_rows", "window_rows"]

FORMATS = ("csv", "jsonl", "parquet")

FILE_COLUMNS = (
    "path",
    "status",
    "label",
    "top_label",
    "top_score",
    "review_label",
    "scores",
    "error",
    "note",
    "duration_s",
    "sample_rate",
    "channels",
    "format",
    "codec",
    "size",
    "mtime_ns",
    "content_hash",
    "preprocess",
    "model",
    "labels",
    "run_id",
)
WINDOW_COLUMNS = ("path", "window", "start_s", "end_s", "top_label", "top_score", "scores")

_QUERY = (
    "SELECT f.*, e.model, e.n_windows, e.spans, p.labels, p.scores AS pscores, p.window_probs"
    " FROM lib_files f LEFT JOIN lib_embeddings e ON e.id=f.embedding_id"
    " LEFT JOIN lib_predictions p ON p.id=f.prediction_id WHERE f.status IS NOT NULL ORDER BY f.path"
)


def _label(row: sqlite3.Row) -> str | None:
    """The file's answer: the review decision, else the top label when auto."""
    return row["review_label"] or (row["top_label"] if row["status"] == "auto" else None)


def file_rows(db: Database) -> Iterator[dict[str, Any]]:
    """One dict per tagged file, columns as ``FILE_COLUMNS`` (``scores``: label -> probability)."""
    migrate(db)
    for row in db.conn.execute(_QUERY):
        scores = {s[0]: s[1] for s in json.loads(row["pscores"])} if row["pscores"] else {}
        out = {c: row[c] for c in FILE_COLUMNS if c not in ("label", "scores", "labels", "model")}
        yield {
            **out,
            "label": _label(row),
            "scores": scores,
            "model": row["model"],
            "labels": json.loads(row["labels"]) if row["labels"] else [],
        }


def window_rows(db: Database) -> Iterator[dict[str, Any]]:
    """One dict per window of each tagged file, columns as ``WINDOW_COLUMNS``."""
    migrate(db)
    for row in db.conn.execute(_QUERY):
        if not row["window_probs"] or not row["spans"]:
            continue
        labels = json.loads(row["labels"])
        spans = np.frombuffer(row["spans"], np.float32).reshape(-1, 2)
        for i, probs in enumerate(json.loads(row["window_probs"])):
            best = int(np.argmax(probs))
            yield {
                "path": row["path"],
                "window": i,
                "start_s": round(float(spans[i][0]), 3),
                "end_s": round(float(spans[i][1]), 3),
                "top_label": labels[best],
                "top_score": probs[best],
                "scores": dict(zip(labels, probs, strict=False)),
            }


def export(db: Database, out: IO[str] | IO[bytes] | str, fmt: str, *, windows: bool = False) -> int:
    """Write the library to ``out`` (a path, or a text stream for csv/jsonl); returns the row count.

    Raises:
        ConfigError: unknown format, or parquet to a text stream.
        MissingExtraError: parquet without pyarrow.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    rows = window_rows(db) if windows else file_rows(db)
    columns = WINDOW_COLUMNS if windows else FILE_COLUMNS
    if fmt == "parquet":
        if not isinstance(out, str):
            raise ConfigError("parquet needs an output file: -o FILE.parquet")
        return _parquet(rows, columns, out)
    if isinstance(out, str):
        with open(out, "w", encoding="utf-8", newline="") as f:
            return _text(rows, columns, f, fmt)
    return _text(rows, columns, out, fmt)  # type: ignore[arg-type]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}


def _text(rows: Iterator[dict[str, Any]], columns: tuple[str, ...], out: IO[str], fmt: str) -> int:
    n = 0
    writer = csv.DictWriter(out, fieldnames=columns) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    for row in rows:
        if writer:
            writer.writerow(_flat(row))
        else:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n


def _parquet(rows: Iterator[dict[str, Any]], columns: tuple[str, ...], path: str) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("parquet export", "tag") from None
    data = [_flat(r) for r in rows]
    table = pa.Table.from_pylist(data, schema=None) if data else pa.table({c: [] for c in columns})
    pq.write_table(table, path)
    return len(data)


def to_string(db: Database, fmt: str, *, windows: bool = False) -> str:
    """The export as a string (csv or jsonl): handy for the API and tests."""
    buf = io.StringIO()
    export(db, buf, fmt, windows=windows)
    return buf.getvalue()
