"""The event log and the alert outbox, in earmark's SQLite file.

Every event is written here first; sinks are fed from the outbox, never
directly, so a sink that is down gets its messages later, at least once, keyed
by event id (one row per sink, event and kind; a message is deleted only after
its sink took it). The outbox holds at most ``max_pending`` messages per sink:
past that the oldest are dropped and counted (``outbox_dropped:<sink>``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import ConfigError
from ..store import Database, Migration

__all__ = ["MIGRATIONS", "EventLog", "OutboxItem", "event_id", "parse_since", "public_event", "utc_iso"]


def _events_001(c: sqlite3.Connection) -> None:
    c.execute("""CREATE TABLE monitor_events (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        rule TEXT NOT NULL,
        label TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        start_s REAL NOT NULL,          -- stream seconds
        end_s REAL,
        started_at TEXT NOT NULL,       -- ISO 8601 UTC
        ended_at TEXT,
        peak REAL NOT NULL,
        windows INTEGER NOT NULL DEFAULT 0,
        closed_by TEXT,                 -- quiet, end-of-stream, source-lost, shutdown, interrupted
        clip_path TEXT,
        model TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))""")
    c.execute("CREATE INDEX monitor_events_started ON monitor_events(started_at)")
    c.execute("CREATE INDEX monitor_events_label ON monitor_events(label, started_at)")


def _events_002(c: sqlite3.Connection) -> None:
    c.execute("""CREATE TABLE monitor_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sink TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,             -- start, end
        payload TEXT NOT NULL,          -- JSON
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0,   -- unix time of the next try
        last_error TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        UNIQUE (sink, event_id, kind))""")
    c.execute("CREATE INDEX monitor_outbox_sink ON monitor_outbox(sink, seq)")
    c.execute("CREATE TABLE monitor_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")


def _events_003(c: sqlite3.Connection) -> None:
    # refined boundaries: which estimate start_s/end_s carry, and the coarse one beside it
    c.execute("ALTER TABLE monitor_events ADD COLUMN start_by TEXT")  # refined, coarse
    c.execute("ALTER TABLE monitor_events ADD COLUMN end_by TEXT")
    c.execute("ALTER TABLE monitor_events ADD COLUMN coarse_start_s REAL")
    c.execute("ALTER TABLE monitor_events ADD COLUMN coarse_end_s REAL")
    c.execute("ALTER TABLE monitor_events ADD COLUMN realtime INTEGER")  # 1: a live, wall-clock source


MIGRATIONS = [
    Migration("events-001-event-log", _events_001),
    Migration("events-002-outbox", _events_002),
    Migration("events-003-boundaries", _events_003),
]

_COLUMNS = (
    "id",
    "source",
    "rule",
    "label",
    "status",
    "start_s",
    "end_s",
    "started_at",
    "ended_at",
    "peak",
    "windows",
    "closed_by",
    "clip_path",
    "model",
    "created_at",
    "start_by",
    "end_by",
    "coarse_start_s",
    "coarse_end_s",
    "realtime",
)


def utc_iso(t: float) -> str:
    """Unix time -> ``2025-01-02T03:04:05.678Z``."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event_id(source: str, rule: str, label: str, started_at: str) -> str:
    """A stable id: the same event (source, rule, label, start) always gets the same one."""
    digest = hashlib.sha256(f"{source}\0{rule}\0{label}\0{started_at}".encode()).hexdigest()
    return "ev_" + digest[:20]


def parse_since(text: str | None, now: datetime | None = None) -> str | None:
    """``30m``/``12h``/``7d``/``2w`` ago, or an ISO date/time (local unless it says otherwise) -> ISO UTC.

    Raises:
        ConfigError: neither form.
    """
    if text is None or not str(text).strip():
        return None
    now = now or datetime.now(timezone.utc)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        when = now - timedelta(**{unit: float(m.group(1))})
    else:
        try:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"{text!r} is not a time: use 30m, 12h, 7d or a date such as 2025-01-31T08:00"
            ) from None
        if when.tzinfo is None:
            when = when.astimezone()  # local time, as people write it
    return utc_iso(when.timestamp())


def public_event(row: dict[str, Any]) -> dict[str, Any]:
    """An event as shown outside this machine: the clip's file name, never its local path."""
    out = {k: v for k, v in row.items() if k != "clip_path"}
    out["clip"] = os.path.basename(row["clip_path"]) if row.get("clip_path") else None
    return out


@dataclass(frozen=True, kw_only=True)
class OutboxItem:
    """One message waiting for one sink."""

    seq: int
    sink: str
    event_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    next_at: float


class EventLog:
    """Events and outbox over an :class:`earmark.store.Database` (migrated on creation).

    Args:
        db: the database.
        max_pending: most outbox messages kept per sink.
    """

    def __init__(self, db: Database, *, max_pending: int = 10_000) -> None:
        self.db = db
        self.max_pending = max_pending
        db.migrate(MIGRATIONS)

    # -- events ---------------------------------------------------------------------------------

    def open_event(
        self, row: dict[str, Any], payload: dict[str, Any], sinks: Iterable[str]
    ) -> dict[str, int]:
        """Record a new open event and queue its start message for each sink.

        Returns:
            sink -> messages dropped to make room (usually 0).
        """
        cols = [c for c in _COLUMNS if c in row]
        with self.db.transaction() as c:
            c.execute(
                f"INSERT OR IGNORE INTO monitor_events ({', '.join(cols)}) VALUES"
                f" ({', '.join('?' * len(cols))})",
                [row[k] for k in cols],
            )
            return self._enqueue(c, row["id"], "start", payload, sinks)

    def close_event(
        self, event_id: str, fields: dict[str, Any], payload: dict[str, Any], sinks: Iterable[str]
    ) -> dict[str, int]:
        """Mark an event closed with ``fields`` (end_s, ended_at, peak, ...) and queue its end message."""
        fields = {**fields, "status": "closed"}
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.db.transaction() as c:
            c.execute(f"UPDATE monitor_events SET {sets} WHERE id=?", [*fields.values(), event_id])
            return self._enqueue(c, event_id, "end", payload, sinks)

    def close_stale(
        self,
        sinks: Iterable[str] = (),
        end_payload: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        now: float | None = None,
    ) -> int:
        """Close events left open by a monitor that died, and queue their ``end`` for every sink.

        Each is marked ``closed_by='interrupted'``, ended at ``now`` (when the restart
        noticed; its stream end is unknown), and ``end_payload(row)`` is queued for each
        of ``sinks``, so a sink holding the event's state (an MQTT ``ON``) hears it end.

        Returns:
            How many events were closed.
        """
        ended_at = utc_iso(time.time() if now is None else now)
        with self.db.transaction() as c:
            rows = [dict(r) for r in c.execute("SELECT * FROM monitor_events WHERE status='open'")]
            for row in rows:
                c.execute(
                    "UPDATE monitor_events SET status='closed', closed_by='interrupted', ended_at=? WHERE id=?",
                    (ended_at, row["id"]),
                )
                if end_payload is not None:
                    closed = {**row, "status": "closed", "closed_by": "interrupted", "ended_at": ended_at}
                    self._enqueue(c, row["id"], "end", end_payload(closed), sinks)
            return len(rows)

    def get(self, event_id: str) -> dict[str, Any] | None:
        row = self.db.conn.execute("SELECT * FROM monitor_events WHERE id=?", (event_id,)).fetchone()
        return dict(row) if row else None

    def list_events(
        self,
        *,
        since: str | None = None,
        label: str | None = None,
        source: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Events newest first, filtered by start time (ISO UTC, inclusive), label and source."""
        where, args = [], []
        for clause, value in (("started_at >= ?", since), ("label = ?", label), ("source = ?", source)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = "SELECT * FROM monitor_events" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY started_at DESC, id LIMIT ?"
        return [dict(r) for r in self.db.conn.execute(sql, [*args, int(limit)])]

    # -- outbox ---------------------------------------------------------------------------------

    def _enqueue(
        self, c: sqlite3.Connection, event_id: str, kind: str, payload: dict[str, Any], sinks: Iterable[str]
    ) -> dict[str, int]:
        dropped: dict[str, int] = {}
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        for sink in sinks:
            c.execute(
                "INSERT OR IGNORE INTO monitor_outbox (sink, event_id, kind, payload) VALUES (?, ?, ?, ?)",
                (sink, event_id, kind, text),
            )
            (n,) = c.execute("SELECT COUNT(*) FROM monitor_outbox WHERE sink=?", (sink,)).fetchone()
            over = n - self.max_pending
            if over > 0:
                c.execute(
                    "DELETE FROM monitor_outbox WHERE seq IN (SELECT seq FROM monitor_outbox WHERE sink=?"
                    " ORDER BY seq LIMIT ?)",
                    (sink, over),
                )
                self._bump(c, f"outbox_dropped:{sink}", over)
                dropped[sink] = over
        return dropped

    def head(self, sink: str) -> OutboxItem | None:
        """The oldest message for ``sink`` (sinks get messages in order, one at a time)."""
        r = self.db.conn.execute(
            "SELECT seq, sink, event_id, kind, payload, attempts, next_at FROM monitor_outbox WHERE sink=?"
            " ORDER BY seq LIMIT 1",
            (sink,),
        ).fetchone()
        if r is None:
            return None
        return OutboxItem(
            seq=r[0],
            sink=r[1],
            event_id=r[2],
            kind=r[3],
            payload=json.loads(r[4]),
            attempts=r[5],
            next_at=r[6],
        )

    def delivered(self, seq: int) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM monitor_outbox WHERE seq=?", (seq,))

    def failed(self, seq: int, error: str, retry_in_s: float) -> None:
        with self.db.transaction() as c:
            c.execute(
                "UPDATE monitor_outbox SET attempts=attempts+1, last_error=?, next_at=? WHERE seq=?",
                (error[:500], time.time() + retry_in_s, seq),
            )

    def pending(self, sink: str | None = None) -> int:
        if sink is None:
            return int(self.db.conn.execute("SELECT COUNT(*) FROM monitor_outbox").fetchone()[0])
        return int(
            self.db.conn.execute("SELECT COUNT(*) FROM monitor_outbox WHERE sink=?", (sink,)).fetchone()[0]
        )

    def counter(self, name: str) -> int:
        r = self.db.conn.execute("SELECT value FROM monitor_counters WHERE name=?", (name,)).fetchone()
        return int(r[0]) if r else 0

    @staticmethod
    def _bump(c: sqlite3.Connection, name: str, by: int) -> None:
        c.execute(
            "INSERT INTO monitor_counters(name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value=value+excluded.value",
            (name, by),
        )
