"""The write side: one writer at a time, runs, and the journal of file operations.

Every file operation is a ``lib_ops`` row committed as ``planned`` before the
disk is touched and marked ``done`` (with its effects on ``lib_files`` and
``lib_placements``) in one transaction after. After a crash (kill -9, power
loss), :func:`recover` looks at each ``planned`` row and the disk and either
finishes it or rolls it back, so a resumed run never loses, duplicates or
half-writes a file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import StoreError
from ..store import Database
from .fileops import partial_path, remove_quietly
from .scan import content_hash
from .schema import migrate

__all__ = ["Op", "complete_op", "finish_run", "plan_op", "recover", "set_op_state", "start_run", "writer"]

log = logging.getLogger("earmark")


@dataclass(frozen=True, kw_only=True)
class Op:
    """One journalled file operation (a ``lib_ops`` row)."""

    id: int
    run_id: int
    file_id: int | None
    action: str
    src: str
    dst: str
    out_root: str | None
    content_hash: str
    size: int
    undo_of: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Op:
        return cls(
            **{
                k: row[k]
                for k in (
                    "id",
                    "run_id",
                    "file_id",
                    "action",
                    "src",
                    "dst",
                    "out_root",
                    "content_hash",
                    "size",
                    "undo_of",
                )
            }
        )


@contextmanager
def writer(db: Database) -> Iterator[Database]:
    """Hold the database's writer lock, migrate it, and recover an interrupted journal.

    Raises:
        StoreError: another earmark process holds the lock.
    """
    lock_path = f"{db.path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StoreError(
                f"another earmark process (pid {other}) is writing to {db.path}; "
                "wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        migrate(db)
        recover(db)
        yield db
    finally:
        os.close(fd)  # closing releases the lock


def start_run(db: Database, kind: str, **fields: Any) -> int:
    """Insert a ``running`` run; earlier runs still ``running`` died (we hold the lock): mark them."""
    cols = {"kind": kind, "state": "running", "pid": os.getpid(), **fields}
    with db.transaction() as c:
        c.execute("UPDATE lib_runs SET state='interrupted' WHERE state='running'")
        cur = c.execute(
            f"INSERT INTO lib_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            tuple(cols.values()),
        )
        return int(cur.lastrowid or 0)


def finish_run(db: Database, run_id: int, state: str, summary: dict[str, Any]) -> None:
    with db.transaction() as c:
        c.execute(
            "UPDATE lib_runs SET state=?, summary=?, finished_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')"
            " WHERE id=?",
            (state, json.dumps(summary), run_id),
        )


def plan_op(db: Database, run_id: int, **fields: Any) -> Op:
    """Commit a ``planned`` operation; only then may the disk be touched."""
    cols = {"run_id": run_id, "state": "planned", **fields}
    with db.transaction() as c:
        cur = c.execute(
            f"INSERT INTO lib_ops ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            tuple(cols.values()),
        )
        row = c.execute("SELECT * FROM lib_ops WHERE id=?", (cur.lastrowid,)).fetchone()
    return Op.from_row(row)


def set_op_state(db: Database, op_id: int, state: str, error: str | None = None) -> None:
    with db.transaction() as c:
        c.execute("UPDATE lib_ops SET state=?, error=? WHERE id=?", (state, error, op_id))


def complete_op(db: Database, op: Op) -> None:
    """Mark an operation done and apply what it means to ``lib_files`` and ``lib_placements``."""
    with db.transaction() as c:
        c.execute(
            "UPDATE lib_ops SET state='done', dst=?, done_at=strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id=?",
            (op.dst, op.id),
        )
        if op.undo_of is not None:
            c.execute("UPDATE lib_ops SET state='undone' WHERE id=?", (op.undo_of,))
        if op.file_id is not None:
            _apply_effects(c, op)


def _under(path: str, root: str | None) -> bool:
    return bool(root) and os.path.commonpath([path, root]) == root  # type: ignore[list-item]


def _apply_effects(c: sqlite3.Connection, op: Op) -> None:
    if (
        op.action == "move"
        and c.execute("SELECT 1 FROM lib_files WHERE id=? AND path=?", (op.file_id, op.src)).fetchone()
    ):
        c.execute("DELETE FROM lib_files WHERE path=? AND id<>?", (op.dst, op.file_id))  # a stale row
        c.execute("UPDATE lib_files SET path=? WHERE id=?", (op.dst, op.file_id))
    if op.action == "delete":
        c.execute("DELETE FROM lib_placements WHERE file_id=? AND path=?", (op.file_id, op.dst))
        if c.execute("SELECT 1 FROM lib_files WHERE id=? AND path=?", (op.file_id, op.dst)).fetchone():
            c.execute("UPDATE lib_files SET path=? WHERE id=?", (op.src, op.file_id))
    elif op.out_root and _under(op.dst, op.out_root):
        c.execute(
            "INSERT OR REPLACE INTO lib_placements (file_id, out_root, path, op_id) VALUES (?,?,?,?)",
            (op.file_id, op.out_root, op.dst, op.id),
        )
    elif op.out_root:
        c.execute("DELETE FROM lib_placements WHERE file_id=? AND out_root=?", (op.file_id, op.out_root))


def _holds(path: str, digest: str) -> bool:
    try:
        return os.path.isfile(path) and content_hash(path) == digest
    except OSError:
        return False


def recover(db: Database) -> int:
    """Finish or roll back every operation left ``planned`` by a crash; returns how many."""
    rows = db.conn.execute("SELECT * FROM lib_ops WHERE state='planned' ORDER BY id").fetchall()
    for row in rows:
        op = Op.from_row(row)
        remove_quietly(partial_path(op.dst, op.id))
        state = _resolve(op)
        if state == "done":
            complete_op(db, op)
        else:
            set_op_state(
                db,
                op.id,
                state,
                "interrupted; rolled back"
                if state == "aborted"
                else "interrupted; the file is at neither path",
            )
        log.info("recovered %s %s -> %s: %s", op.action, op.src, op.dst, state)
    return len(rows)


def _resolve(op: Op) -> str:
    """What an interrupted operation amounts to on disk, finishing a move's last step."""
    if op.action == "delete":
        if not os.path.lexists(op.dst):
            return "done"
        if _holds(op.src, op.content_hash) and _holds(op.dst, op.content_hash):
            os.unlink(op.dst)
            return "done"
        return "aborted"
    if not _holds(op.dst, op.content_hash):
        # the new name never got the file: nothing happened that needs undoing
        return "aborted" if os.path.lexists(op.src) else "failed"
    if op.action == "move" and os.path.lexists(op.src):
        if os.path.samefile(op.src, op.dst) or _holds(op.src, op.content_hash):
            os.unlink(op.src)  # the copy is verified in place: finish the move
    return "done"
