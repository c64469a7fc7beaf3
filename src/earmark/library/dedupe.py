"""``tag --sort-into --skip-duplicates``: file one copy of each recording, skip the others.

Before filing, the planned files and the files already filed under the output
folder are grouped by :func:`earmark.library.duplicates.find_duplicates`. In
each group:

- a member already filed there (its placement still on disk) stays the copy:
  every fresh copy or move of another member is skipped;
- otherwise the group's keeper (lossless over lossy, higher rate and bitrate,
  longer) among the planned files is filed and the rest are skipped.

A move of an already-filed file to another label folder (a review decision) is
never skipped. A skipped file is not touched; the skip is written to
``lib_skipped`` (run, file, the copy kept, similarity) next to the run's
journalled operations, so ``earmark undo RUN`` restores the tree exactly (it
reverses the operations; skipped files never moved).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from ..store import Database
from .duplicates import DuplicateOptions, find_duplicates
from .filing import PlannedOp

__all__ = ["Skip", "drop_duplicates", "record_skips"]


@dataclass(frozen=True, kw_only=True)
class Skip:
    """A planned operation left out: ``op`` is a copy of the recording filed as ``kept_path``."""

    op: PlannedOp
    kept_file_id: int
    kept_path: str
    similarity: float


def _placed(conn: sqlite3.Connection, out_root: str) -> dict[int, str]:
    rows = conn.execute("SELECT file_id, path FROM lib_placements WHERE out_root=?", (out_root,)).fetchall()
    return {int(r["file_id"]): r["path"] for r in rows if os.path.lexists(r["path"])}


def drop_duplicates(
    db: Database, plan: list[PlannedOp], out_root: str, options: DuplicateOptions | None = None
) -> tuple[list[PlannedOp], list[Skip]]:
    """Split ``plan`` into the operations to perform and the duplicates to skip (plan order kept)."""
    placed = _placed(db.conn, out_root)
    placed_paths = set(placed.values())
    fresh = {p.file_id: p for p in plan if p.src not in placed_paths}
    if not fresh:
        return plan, []
    report = find_duplicates(db, options, file_ids=set(fresh) | set(placed))
    skipped: dict[int, Skip] = {}
    for group in report.groups:
        ids = [f.file_id for f in group.files]  # best first
        already = [i for i in ids if i in placed and i not in fresh]
        if already:
            kept_id, kept_path = already[0], placed[already[0]]
        else:
            planned = [i for i in ids if i in fresh]
            if not planned:
                continue
            kept_id, kept_path = planned[0], fresh[planned[0]].dst
        best = {e.b if e.a == kept_id else e.a: e.similarity for e in group.evidence if kept_id in (e.a, e.b)}
        for i in ids:
            if i != kept_id and i in fresh:
                skipped[i] = Skip(
                    op=fresh[i],
                    kept_file_id=kept_id,
                    kept_path=kept_path,
                    similarity=best.get(i, min(e.similarity for e in group.evidence)),
                )
    return [p for p in plan if p.file_id not in skipped], [s for p in plan if (s := skipped.get(p.file_id))]


def record_skips(db: Database, run_id: int, out_root: str, skips: list[Skip]) -> None:
    """Write the skips to ``lib_skipped`` in one transaction."""
    with db.transaction() as c:
        c.executemany(
            "INSERT INTO lib_skipped (run_id, file_id, kept_file_id, kept_path, out_root, similarity)"
            " VALUES (?,?,?,?,?,?)",
            [(run_id, s.op.file_id, s.kept_file_id, s.kept_path, out_root, s.similarity) for s in skips],
        )
