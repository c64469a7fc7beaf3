"""The review queue: files below the confidence bar, decided by a person.

A decision is ``accept`` (the top label is right), ``relabel`` (another
label) or ``skip`` (not now). Every decision is kept in ``lib_reviews``; the
file's ``review_label`` holds the current answer. :func:`apply_decisions`
files decided files where their tagging run's sort-into folder wants them
(from ``_review/`` into ``<label>/``), journalled like any filing, so
``earmark undo`` reverses it too.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..store import Database
from .filing import FilingOptions, OpResult, check_writable, execute, plan_filing
from .journal import finish_run, start_run, writer
from .schema import migrate

__all__ = ["DECISIONS", "ReviewItem", "apply_decisions", "decide", "review_item", "review_queue"]

DECISIONS = ("accept", "relabel", "skip")


@dataclass(frozen=True, kw_only=True)
class ReviewItem:
    """A file waiting for a decision.

    Attributes:
        file_id: ``lib_files`` id.
        path: where the file is now.
        top: best labels with probabilities, best first (up to 3).
        labels: the whole label set it was scored against (relabel choices).
        duration_s: length in seconds.
        review_label: the current decision's label, if any.
    """

    file_id: int
    path: str
    top: tuple[tuple[str, float], ...]
    labels: tuple[str, ...]
    duration_s: float | None
    review_label: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "file_id": self.file_id,
            "path": self.path,
            "duration_s": self.duration_s,
            "top": [{"label": lab, "probability": p} for lab, p in self.top],
            "labels": list(self.labels),
            "review_label": self.review_label,
        }


def _item(row: sqlite3.Row) -> ReviewItem:
    scores = json.loads(row["scores"]) if row["scores"] else []
    return ReviewItem(
        file_id=int(row["id"]),
        path=row["path"],
        duration_s=row["duration_s"],
        review_label=row["review_label"],
        top=tuple((str(s[0]), float(s[1])) for s in scores[:3]),
        labels=tuple(json.loads(row["labels"])) if row["labels"] else (),
    )


_SELECT = (
    "SELECT f.*, p.scores, p.labels FROM lib_files f LEFT JOIN lib_predictions p ON p.id=f.prediction_id"
)


def review_queue(
    db: Database, *, limit: int | None = None, include_decided: bool = False
) -> list[ReviewItem]:
    """Files with status ``review`` and no decision yet; those skipped before come last.

    Args:
        db: the library database.
        limit: at most this many.
        include_decided: also list files already accepted or relabelled.
    """
    migrate(db)
    where = "f.status='review'" + ("" if include_decided else " AND f.review_label IS NULL")
    rows = db.conn.execute(
        f"{_SELECT} WHERE {where} ORDER BY (SELECT max(id) FROM lib_reviews r WHERE r.file_id=f.id"
        f" AND r.decision='skip') IS NOT NULL, f.path LIMIT ?",
        (limit if limit is not None else -1,),
    ).fetchall()
    return [_item(r) for r in rows]


def review_item(db: Database, file_id: int) -> ReviewItem | None:
    """One file as a review item (any status), or None when unknown."""
    migrate(db)
    row = db.conn.execute(f"{_SELECT} WHERE f.id=?", (file_id,)).fetchone()
    return _item(row) if row else None


def decide(
    db: Database, file_id: int, decision: str, *, label: str | None = None, via: str = "cli"
) -> str | None:
    """Store a decision; returns the file's label now (None after a skip).

    Raises:
        ConfigError: unknown decision or file, or ``relabel`` without a label.
    """
    if decision not in DECISIONS:
        raise ConfigError(f"unknown decision {decision!r}; expected one of: {', '.join(DECISIONS)}")
    label = " ".join((label or "").split()) or None
    if decision == "relabel" and not label:
        raise ConfigError("relabel needs the new label")
    migrate(db)
    with db.transaction() as c:
        row = c.execute("SELECT content_hash, top_label FROM lib_files WHERE id=?", (file_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no file with id {file_id} in {db.path}")
        final = row["top_label"] if decision == "accept" else label if decision == "relabel" else None
        c.execute(
            "INSERT INTO lib_reviews (file_id, content_hash, decision, label, via) VALUES (?,?,?,?,?)",
            (file_id, row["content_hash"], decision, final, via),
        )
        if final is not None:
            c.execute(
                "UPDATE lib_files SET review_label=?, reviewed_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')"
                " WHERE id=?",
                (final, file_id),
            )
    return final


def apply_decisions(db: Database, file_ids: Iterable[int] | None = None) -> Iterator[OpResult]:
    """File decided files as their tagging run's ``--sort-into`` asked (copy or move), journalled.

    Files whose run did not sort (or only dry-ran) are left alone; the next
    ``earmark tag --sort-into`` files them by their decision.
    """
    with writer(db):
        ids = _decided(db.conn, file_ids)
        groups: dict[tuple[str, bool], list[int]] = {}
        for file_id, out, mode in ids:
            groups.setdefault((out, mode == "move"), []).append(file_id)
        if not groups:
            return
        run_id = start_run(db, "review")
        counts: dict[str, int] = {}
        for (out, move), group in groups.items():
            opts = FilingOptions(sort_into=Path(out), move=move)
            plan = plan_filing(db.conn, group, opts, min_confidence=1.0)
            if plan:
                check_writable(Path(out))
            for result in execute(db, run_id, plan, out):
                counts[result.state] = counts.get(result.state, 0) + 1
                yield result
        finish_run(db, run_id, "done", counts)


def _decided(conn: sqlite3.Connection, file_ids: Iterable[int] | None) -> list[tuple[int, str, str]]:
    rows = conn.execute(
        "SELECT f.id, r.sort_into, r.mode FROM lib_files f JOIN lib_runs r ON r.id=f.run_id"
        " WHERE f.review_label IS NOT NULL AND r.sort_into IS NOT NULL AND r.mode IN ('copy', 'move')"
    ).fetchall()
    wanted = None if file_ids is None else set(file_ids)
    return [(int(r[0]), os.path.abspath(r[1]), r[2]) for r in rows if wanted is None or r[0] in wanted]
