"""``earmark undo RUN_ID``: put every file a run filed back exactly where it was.

Each inverse operation is journalled like any other (a run of kind ``undo``),
checks hashes before it removes anything, and never removes the last copy of
a file: a copy whose original is gone is moved back instead of deleted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import FilingError
from ..store import Database
from .fileops import fsync_dir
from .filing import perform
from .journal import Op, finish_run, plan_op, set_op_state, start_run, writer
from .scan import content_hash

__all__ = ["UndoResult", "undo_run"]

log = logging.getLogger("earmark")


@dataclass(frozen=True, kw_only=True)
class UndoResult:
    """One original operation and what undoing it did: ``restored``, ``removed``, ``gone`` or ``failed``."""

    original: Op
    outcome: str
    error: str | None = None


def _holds(path: str, digest: str) -> bool:
    try:
        return os.path.isfile(path) and content_hash(path) == digest
    except OSError:
        return False


def _check_undoable(conn: sqlite3.Connection, run_id: int) -> list[Op]:
    run = conn.execute("SELECT * FROM lib_runs WHERE id=?", (run_id,)).fetchone()
    if run is None:
        raise FilingError(f"there is no run {run_id}; `earmark undo --list` shows the runs")
    ops = [
        Op.from_row(r)
        for r in conn.execute(
            "SELECT * FROM lib_ops WHERE run_id=? AND state='done' ORDER BY id DESC", (run_id,)
        )
    ]
    later = conn.execute(
        "SELECT DISTINCT l.run_id FROM lib_ops l JOIN lib_ops o ON l.src=o.dst AND l.id>o.id"
        " WHERE o.run_id=? AND o.state='done' AND l.state='done' AND l.run_id<>o.run_id",
        (run_id,),
    ).fetchall()
    if later:
        runs = ", ".join(str(r[0]) for r in later)
        raise FilingError(f"run {runs} moved files that run {run_id} filed; undo run {runs} first")
    return ops


def _inverse(o: Op) -> tuple[str, str, str] | str:
    """(action, src, dst) that reverses ``o``, or an outcome when nothing needs doing."""
    if o.action == "delete":
        return ("copy", o.src, o.dst) if not os.path.lexists(o.dst) else "failed:the path is taken again"
    if not os.path.lexists(o.dst):
        if o.action == "copy" or _holds(o.src, o.content_hash):
            return "gone"
        return "failed:the file is at neither path"
    if not _holds(o.dst, o.content_hash):
        return f"failed:{o.dst} changed since it was filed; left in place"
    if _holds(o.src, o.content_hash):
        return ("delete", o.src, o.dst)  # the original is there: drop the filed copy
    if os.path.lexists(o.src):
        return f"failed:{o.src} now holds another file; {o.dst} left in place"
    return ("move", o.dst, o.src)  # the only copy goes back


def undo_run(db: Database, run_id: int) -> Iterator[UndoResult]:
    """Reverse a run's file operations, newest first; yields one result per operation.

    Raises:
        FilingError: no such run, or a later run built on its files (undo that first).
    """
    with writer(db):
        ops = _check_undoable(db.conn, run_id)
        undo_id = start_run(db, "undo", undo_of=run_id)
        counts: dict[str, int] = {}
        for o in ops:
            result = _undo_one(db, undo_id, o)
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            yield result
        _remove_empty_folders(ops)
        finish_run(db, undo_id, "done", counts)


def _undo_one(db: Database, undo_id: int, o: Op) -> UndoResult:
    inv = _inverse(o)
    if isinstance(inv, str):
        if inv == "gone":
            set_op_state(db, o.id, "undone", "already gone when undone")
            return UndoResult(original=o, outcome="gone")
        return UndoResult(original=o, outcome="failed", error=inv.split(":", 1)[1])
    action, src, dst = inv
    op = plan_op(
        db,
        undo_id,
        file_id=o.file_id,
        action=action,
        src=src,
        dst=dst,
        out_root=o.out_root,
        content_hash=o.content_hash,
        size=o.size,
        undo_of=o.id,
    )
    try:
        perform(db, op, exact=True)
    except (OSError, FilingError) as ex:
        reason = str(ex) if isinstance(ex, FilingError) else f"{ex.strerror or ex} ({dst})"
        set_op_state(db, op.id, "failed", reason)
        return UndoResult(original=o, outcome="failed", error=reason)
    if action != "delete" and not _holds(dst, o.content_hash):  # verified again after the fact
        return UndoResult(original=o, outcome="failed", error=f"{dst} does not hold the original bytes")
    return UndoResult(original=o, outcome="removed" if action == "delete" else "restored")


def _remove_empty_folders(ops: list[Op]) -> None:
    """Drop the label folders the run created, once empty (never anything outside its output folder)."""
    for folder in sorted({os.path.dirname(o.dst) for o in ops if o.out_root}, reverse=True):
        root = next(o.out_root for o in ops if o.out_root and os.path.dirname(o.dst) == folder)
        if folder != root and os.path.commonpath([folder, root]) == root:
            try:
                os.rmdir(folder)
                fsync_dir(os.path.dirname(folder))
            except OSError:
                pass  # not empty: something else lives there
