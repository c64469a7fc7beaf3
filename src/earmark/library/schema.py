"""The library's tables, as named migrations on :class:`earmark.store.Database`.

Tables (all prefixed ``lib_``):

- ``lib_runs``: one row per ``tag``, ``undo`` or ``review`` run: what was asked,
  its state (``running``, ``done``, ``interrupted``, ``failed``) and a summary.
- ``lib_files``: one row per path seen: size, mtime, content hash, header
  facts, the embedding and prediction of its last tagging, its status (``auto``,
  ``review``, ``error``) and the review decision.
- ``lib_embeddings``: window embeddings per *content* (hash), model, window
  settings and pre-processing: spans as float32, vectors as float16. A decode
  failure is stored here too (``error``), so a re-run skips it.
- ``lib_predictions``: scores of one embedding against one label set
  (``labels_key``), with per-window probabilities for export.
- ``lib_reviews``: every review decision, newest last.
- ``lib_ops``: the filing journal. Each file operation is written here
  (``planned``) and committed *before* it touches the disk, then marked ``done``
  (or ``failed``/``aborted``); ``undone`` once an undo run reversed it.
- ``lib_placements``: where under a sort-into folder each file currently sits.
- ``lib_fingerprints``: the Chromaprint fingerprint per content hash (uint32
  items, ``<u4`` bytes) or why there is none (see :mod:`.fingerprints`).
- ``lib_skipped``: files a ``tag --sort-into --skip-duplicates`` run did not
  file because another copy of the recording was (or is) filed there.
"""

from __future__ import annotations

import sqlite3

from ..store import Database, Migration

__all__ = ["MIGRATIONS", "migrate"]

NOW = "(strftime('%Y-%m-%dT%H:%M:%fZ','now'))"


def _run_script(c: sqlite3.Connection, script: str) -> None:
    # not executescript(): it would COMMIT the migration's transaction first
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            c.execute(statement)
            statement = ""


def _tables(c: sqlite3.Connection) -> None:
    _run_script(
        c,
        f"""
    CREATE TABLE lib_runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'undo', 'review')),
        state TEXT NOT NULL CHECK (state IN ('running', 'done', 'interrupted', 'failed')),
        started_at TEXT NOT NULL DEFAULT {NOW},
        finished_at TEXT,
        pid INTEGER,
        model TEXT,
        labels TEXT,            -- JSON list, as given
        labels_key TEXT,        -- hash of model, labels and scoring options
        options TEXT,           -- JSON: window/hop/templates/min_confidence/preprocess...
        sort_into TEXT,         -- absolute folder, or NULL
        mode TEXT,              -- copy | move | NULL
        undo_of INTEGER REFERENCES lib_runs(id),
        summary TEXT            -- JSON counts
    );
    CREATE TABLE lib_embeddings (
        id INTEGER PRIMARY KEY,
        content_hash TEXT NOT NULL,
        model TEXT NOT NULL,
        window_s REAL NOT NULL,
        hop_s REAL NOT NULL,
        preprocess TEXT NOT NULL,   -- 'none' | 'noisereduce'
        duration_s REAL,
        sample_rate INTEGER,
        n_windows INTEGER,
        dim INTEGER,
        spans BLOB,                 -- float32 (n_windows, 2) seconds
        vectors BLOB,               -- float16 (n_windows, dim), L2-normalised before rounding
        error TEXT,                 -- decode failure reason (then no vectors)
        created_at TEXT NOT NULL DEFAULT {NOW},
        UNIQUE (content_hash, model, window_s, hop_s, preprocess)
    );
    CREATE TABLE lib_predictions (
        id INTEGER PRIMARY KEY,
        embedding_id INTEGER NOT NULL REFERENCES lib_embeddings(id) ON DELETE CASCADE,
        labels_key TEXT NOT NULL,
        labels TEXT NOT NULL,       -- JSON list
        scores TEXT NOT NULL,       -- JSON [[label, probability, cosine], ...] best first
        top_label TEXT NOT NULL,
        top_score REAL NOT NULL,
        window_probs TEXT,          -- JSON [[p per label in `labels` order], ...] per window
        created_at TEXT NOT NULL DEFAULT {NOW},
        UNIQUE (embedding_id, labels_key)
    );
    CREATE TABLE lib_files (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,  -- absolute
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT NOT NULL, -- sha256 hex of the bytes
        format TEXT, codec TEXT, sample_rate INTEGER, channels INTEGER,
        duration_s REAL,
        preprocess TEXT,            -- pre-processing used for its embedding
        embedding_id INTEGER REFERENCES lib_embeddings(id) ON DELETE SET NULL,
        prediction_id INTEGER REFERENCES lib_predictions(id) ON DELETE SET NULL,
        run_id INTEGER REFERENCES lib_runs(id),
        status TEXT CHECK (status IN ('auto', 'review', 'error')),
        error TEXT,
        note TEXT,                  -- decoder warnings (partly corrupt...)
        top_label TEXT,
        top_score REAL,
        review_label TEXT,          -- label decided in review (NULL: none yet)
        reviewed_at TEXT,
        updated_at TEXT NOT NULL DEFAULT {NOW}
    );
    CREATE INDEX lib_files_hash ON lib_files(content_hash);
    CREATE INDEX lib_files_status ON lib_files(status);
    CREATE TABLE lib_reviews (
        id INTEGER PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES lib_files(id) ON DELETE CASCADE,
        content_hash TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('accept', 'relabel', 'skip')),
        label TEXT,
        via TEXT NOT NULL,          -- cli | api | web
        decided_at TEXT NOT NULL DEFAULT {NOW}
    );
    CREATE TABLE lib_ops (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES lib_runs(id),
        file_id INTEGER REFERENCES lib_files(id),
        action TEXT NOT NULL CHECK (action IN ('copy', 'move', 'delete')),
        src TEXT NOT NULL,          -- delete: the copy that stays
        dst TEXT NOT NULL,          -- delete: the path removed
        out_root TEXT,
        content_hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('planned', 'done', 'failed', 'aborted', 'undone')),
        error TEXT,
        undo_of INTEGER REFERENCES lib_ops(id),
        planned_at TEXT NOT NULL DEFAULT {NOW},
        done_at TEXT
    );
    CREATE INDEX lib_ops_run ON lib_ops(run_id);
    CREATE INDEX lib_ops_state ON lib_ops(state);
    CREATE INDEX lib_ops_src ON lib_ops(src);
    CREATE TABLE lib_placements (
        file_id INTEGER NOT NULL REFERENCES lib_files(id) ON DELETE CASCADE,
        out_root TEXT NOT NULL,
        path TEXT NOT NULL,
        op_id INTEGER NOT NULL REFERENCES lib_ops(id),
        PRIMARY KEY (file_id, out_root)
    );
    """,
    )


def _embedding_seconds(c: sqlite3.Connection) -> None:
    # eval shares this store (earmark.evaluate.cache) and reports how long each file took to embed
    c.execute("ALTER TABLE lib_embeddings ADD COLUMN embed_s REAL")


def _duplicates(c: sqlite3.Connection) -> None:
    _run_script(
        c,
        f"""
    CREATE TABLE lib_fingerprints (
        content_hash TEXT PRIMARY KEY,
        algorithm TEXT NOT NULL,
        duration_s REAL,
        n_items INTEGER NOT NULL,
        items BLOB,                 -- uint32 little-endian, one per ~0.124 s
        error TEXT,                 -- why fpcalc gave none (then n_items is 0)
        created_at TEXT NOT NULL DEFAULT {NOW}
    );
    CREATE TABLE lib_skipped (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES lib_runs(id),
        file_id INTEGER NOT NULL REFERENCES lib_files(id) ON DELETE CASCADE,
        kept_file_id INTEGER REFERENCES lib_files(id) ON DELETE SET NULL,
        kept_path TEXT,             -- the copy filed instead (under out_root)
        out_root TEXT NOT NULL,
        similarity REAL,
        skipped_at TEXT NOT NULL DEFAULT {NOW}
    );
    CREATE INDEX lib_skipped_run ON lib_skipped(run_id);
    """,
    )


MIGRATIONS: list[Migration] = [
    Migration("library-001-tables", _tables),
    Migration("library-002-embedding-seconds", _embedding_seconds),
    Migration("library-dups-001-fingerprints", _duplicates),
]


def migrate(db: Database) -> Database:
    """Bring ``db`` up to the library schema; returns it for chaining."""
    db.migrate(MIGRATIONS)
    return db
