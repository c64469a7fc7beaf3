"""People's verdicts on monitor events ("correct" or "false alarm"), and their export as labelled audio.

A verdict is stored per event in the event database (``monitor_feedback``, one row
per event; marking again replaces it). :func:`export_feedback` copies the clips of
judged events into a folder and writes ``manifest.csv`` (``path,label``), the
manifest layout ``earmark calibrate`` and ``earmark fit`` read (see
:mod:`earmark.evaluate.datasets`): a correct event is an example of its label, a
false alarm an example of ``background_label``. So corrections become the
examples that set the next thresholds or train the next pack::

    earmark events --export feedback/
    earmark calibrate feedback/manifest.csv -o thresholds.json
    earmark fit feedback/manifest.csv -o alarms.pack.json

The event queries the Events tab and the CLI share live here too (filters by
label, source and UTC day; counts per label per hour or day).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..store import Database, Migration
from .events import MIGRATIONS as EVENT_MIGRATIONS

__all__ = [
    "MIGRATIONS",
    "VERDICTS",
    "ExportSummary",
    "clear_verdict",
    "count_events",
    "distinct",
    "export_feedback",
    "find_events",
    "mark_event",
    "migrate",
    "verdict_of",
]

VERDICTS = ("correct", "false_alarm")
BACKGROUND = "background"


def _feedback_001(c: sqlite3.Connection) -> None:
    c.execute("""CREATE TABLE monitor_feedback (
        event_id TEXT PRIMARY KEY REFERENCES monitor_events(id) ON DELETE CASCADE,
        verdict TEXT NOT NULL CHECK (verdict IN ('correct', 'false_alarm')),
        via TEXT NOT NULL DEFAULT 'web',     -- web, cli, api
        decided_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))""")
    c.execute("CREATE INDEX monitor_feedback_verdict ON monitor_feedback(verdict)")


MIGRATIONS = [Migration("feedback-001-verdicts", _feedback_001)]


def migrate(db: Database) -> None:
    """The event tables, then the feedback table (idempotent)."""
    db.migrate(EVENT_MIGRATIONS)
    db.migrate(MIGRATIONS)


def mark_event(db: Database, event_id: str, verdict: str, *, via: str = "web") -> None:
    """Store ``verdict`` (``correct`` or ``false_alarm``) for an event, replacing an earlier one.

    Raises:
        ConfigError: an unknown verdict or event.
    """
    if verdict not in VERDICTS:
        raise ConfigError(f"unknown verdict {verdict!r}; expected one of: {', '.join(VERDICTS)}")
    migrate(db)
    with db.transaction() as c:
        if c.execute("SELECT 1 FROM monitor_events WHERE id=?", (event_id,)).fetchone() is None:
            raise ConfigError(f"no event {event_id!r}")
        c.execute(
            "INSERT INTO monitor_feedback(event_id, verdict, via) VALUES (?, ?, ?) ON CONFLICT(event_id) DO "
            "UPDATE SET verdict=excluded.verdict, via=excluded.via, decided_at=excluded.decided_at",
            (event_id, verdict, via),
        )


def verdict_of(db: Database, event_id: str) -> str | None:
    """The verdict on an event, or None."""
    migrate(db)
    row = db.conn.execute("SELECT verdict FROM monitor_feedback WHERE event_id=?", (event_id,)).fetchone()
    return str(row[0]) if row else None


def clear_verdict(db: Database, event_id: str) -> None:
    """Forget the verdict on an event (nothing happens if there was none)."""
    migrate(db)
    with db.transaction() as c:
        c.execute("DELETE FROM monitor_feedback WHERE event_id=?", (event_id,))


def _filters(label: str | None, source: str | None, day: str | None) -> tuple[str, list[Any]]:
    where, args = [], []
    for clause, value in (
        ("e.label = ?", label),
        ("e.source = ?", source),
        ("substr(e.started_at, 1, 10) = ?", day),
    ):
        if value:
            where.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(where) if where else ""), args


def find_events(
    db: Database,
    *,
    label: str | None = None,
    source: str | None = None,
    day: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Events newest first, each with its ``verdict`` (or None); ``day`` is a UTC date, 2025-01-31."""
    migrate(db)
    where, args = _filters(label, source, day)
    sql = (
        "SELECT e.*, f.verdict AS verdict FROM monitor_events e LEFT JOIN monitor_feedback f ON f.event_id = e.id"
        f"{where} ORDER BY e.started_at DESC, e.id LIMIT ?"
    )
    return [dict(r) for r in db.conn.execute(sql, [*args, int(limit)])]


def count_events(
    db: Database,
    by: Literal["hour", "day"] = "day",
    *,
    label: str | None = None,
    source: str | None = None,
    day: str | None = None,
) -> tuple[list[str], list[list[Any]]]:
    """Events per label per UTC hour or day, newest first: (labels, rows of [bucket, count per label...])."""
    migrate(db)
    width = 13 if by == "hour" else 10
    where, args = _filters(label, source, day)
    rows = db.conn.execute(
        f"SELECT substr(e.started_at, 1, {width}) AS bucket, e.label AS label, count(*) AS n "
        f"FROM monitor_events e{where} GROUP BY bucket, e.label ORDER BY bucket DESC",
        args,
    ).fetchall()
    labels = sorted({r["label"] for r in rows})
    table: dict[str, dict[str, int]] = {}
    for r in rows:
        table.setdefault(r["bucket"], {})[r["label"]] = r["n"]
    shown = [(b.replace("T", " ") + (":00" if by == "hour" else "")) for b in table]
    return labels, [
        [name, *(counts.get(x, 0) for x in labels)]
        for name, counts in zip(shown, table.values(), strict=True)
    ]


def distinct(db: Database, column: Literal["label", "source", "day"]) -> list[str]:
    """Values present in the event log, for filter choices (days newest first)."""
    migrate(db)
    expr = {"label": "label", "source": "source", "day": "substr(started_at, 1, 10)"}[column]
    order = "DESC" if column == "day" else "ASC"
    return [r[0] for r in db.conn.execute(f"SELECT DISTINCT {expr} FROM monitor_events ORDER BY 1 {order}")]


@dataclass(frozen=True, kw_only=True)
class ExportSummary:
    """What :func:`export_feedback` wrote.

    Attributes:
        manifest: the ``manifest.csv`` to give ``earmark calibrate`` / ``earmark fit``.
        examples: rows written, per label.
        without_clip: judged events left out because their clip is gone (or was never kept).
    """

    manifest: Path
    examples: dict[str, int]
    without_clip: int


def export_feedback(
    db: Database, out_dir: str | os.PathLike[str], *, background_label: str = BACKGROUND
) -> ExportSummary:
    """Copy the clips of judged events to ``out_dir/clips/`` and write ``out_dir/manifest.csv``.

    A correct event is labelled with its own label, a false alarm with
    ``background_label``. Running it again brings the folder up to date (changed
    verdicts included); clips already there are not copied again.

    Raises:
        ConfigError: ``out_dir`` cannot be written, or ``background_label`` is empty.
    """
    if not background_label.strip():
        raise ConfigError("the label for false alarms must not be empty")
    migrate(db)
    out = Path(out_dir).expanduser()
    clips = out / "clips"
    try:
        clips.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise ConfigError(f"cannot write to {out}: {ex.strerror or ex}") from None
    rows = db.conn.execute(
        "SELECT e.id, e.label, e.clip_path, f.verdict FROM monitor_feedback f "
        "JOIN monitor_events e ON e.id = f.event_id ORDER BY e.started_at, e.id"
    ).fetchall()
    lines: list[tuple[str, str]] = []
    missing = 0
    for r in rows:
        src = Path(r["clip_path"]) if r["clip_path"] else None
        if src is None or not src.is_file():
            missing += 1
            continue
        dst = clips / f"{r['id']}{src.suffix.lower()}"
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dst.with_suffix(dst.suffix + ".partial"))
            dst.with_suffix(dst.suffix + ".partial").replace(dst)
        lines.append(
            (f"clips/{dst.name}", r["label"] if r["verdict"] == "correct" else background_label.strip())
        )
    manifest = out / "manifest.csv"
    _write_manifest(manifest, lines)
    examples: dict[str, int] = {}
    for _, label in lines:
        examples[label] = examples.get(label, 0) + 1
    return ExportSummary(manifest=manifest, examples=examples, without_clip=missing)


def _write_manifest(path: Path, lines: Sequence[tuple[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label"])
    w.writerows(lines)
    tmp = path.with_suffix(".csv.partial")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(path)  # never a half-written manifest
