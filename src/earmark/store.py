"""The SQLite file: connection settings and named migrations.

One database file (default ``$EARMARK_HOME/earmark.db``) holds the library
(files, embeddings, runs, predictions, reviews) and the monitor's event log and
outbox. Each feature module owns its tables through its own list of named
migrations; :meth:`Database.migrate` applies the ones not yet recorded in
``_earmark_migrations``, each in its own transaction, so features evolve
independently and a half-applied migration never sticks.

WAL mode and a busy timeout let readers (search, the web page) run while one
writer works; writers should still be one thread or process at a time.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError
from .paths import earmark_home

__all__ = ["Database", "Migration", "default_db_path"]


@dataclass(frozen=True)
class Migration:
    """A named schema step: ``name`` is unique across all features (e.g. ``library-001-files``)."""

    name: str
    apply: Callable[[sqlite3.Connection], None]


def default_db_path() -> Path:
    return Path(os.environ.get("EARMARK_DB") or earmark_home() / "earmark.db")


class Database:
    """A SQLite database file with earmark's settings.

    Args:
        path: database file; created with its folder if missing.
        busy_timeout_s: how long a writer waits for another's lock.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path else default_db_path()
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as ex:
            raise StoreError(f"cannot create the folder for {self.path}: {ex.strerror or ex}") from None

    def connect(self) -> sqlite3.Connection:
        """A new connection (WAL, foreign keys on, busy timeout, rows as ``sqlite3.Row``)."""
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        except sqlite3.DatabaseError as ex:
            raise StoreError(f"{self.path} is not a usable earmark database: {ex}") from None
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    @contextmanager
    def transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        c = conn or self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def migrate(self, migrations: Sequence[Migration]) -> list[str]:
        """Apply the migrations not yet applied, in order; returns the names applied now."""
        c = self.conn
        c.execute(
            "CREATE TABLE IF NOT EXISTS _earmark_migrations (name TEXT PRIMARY KEY, applied_at TEXT"
            " NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
        )
        done = {r[0] for r in c.execute("SELECT name FROM _earmark_migrations")}
        applied = []
        for m in migrations:
            if m.name in done:
                continue
            with self.transaction(c):
                if c.execute("SELECT 1 FROM _earmark_migrations WHERE name=?", (m.name,)).fetchone():
                    continue  # another process got there first
                m.apply(c)
                c.execute("INSERT INTO _earmark_migrations(name) VALUES (?)", (m.name,))
            applied.append(m.name)
        return applied

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
