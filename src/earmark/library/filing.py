"""Filing tagged files into ``OUT/<label>/`` folders, safely.

Confident files (top score at or above the minimum confidence, or decided in
review) go to ``OUT/<label>/``, the rest to ``OUT/_review/`` (or stay where
they are). Copy by default, move on request. Each operation goes through the
journal (:mod:`earmark.library.journal`): planned and committed first, done
after, so a crash anywhere is finished or rolled back by the next run. A name
collision never overwrites: ``take.wav`` becomes ``take (1).wav``. Across
filesystems a move is copy, fsync, verify hash, link into place, delete source.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import FilingError
from ..store import Database
from .fileops import NameTaken, copy_verified, fsync_dir, partial_path, place, remove_quietly, same_filesystem
from .journal import Op, complete_op, plan_op, set_op_state
from .scan import content_hash

__all__ = [
    "REVIEW_FOLDER",
    "FilingOptions",
    "OpResult",
    "execute",
    "folder_name",
    "plan_filing",
    "unique_name",
]

log = logging.getLogger("earmark")

REVIEW_FOLDER = "_review"
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_MAX_NAME = 100


@dataclass(frozen=True, kw_only=True)
class FilingOptions:
    """Where and how tagged files are filed.

    Attributes:
        sort_into: the output folder (``OUT``); ``<label>/`` and ``_review/`` go inside.
        move: move instead of copy (the default copy leaves the sources alone).
        review_in_place: leave files that need review where they are instead of ``_review/``.
        dry_run: plan only; touch no file.
        skip_duplicates: file one copy per recording (see :mod:`.dedupe`).
    """

    sort_into: Path
    move: bool = False
    review_in_place: bool = False
    dry_run: bool = False
    skip_duplicates: bool = False


@dataclass(frozen=True, kw_only=True)
class PlannedOp:
    """A file operation not yet journalled: what a dry run shows."""

    file_id: int
    action: str
    src: str
    dst: str
    content_hash: str
    size: int


@dataclass(frozen=True, kw_only=True)
class OpResult:
    """What happened to one planned operation: ``done``, ``failed`` (with ``error``) or ``planned`` (dry run)."""

    op: PlannedOp
    state: str
    error: str | None = None


def folder_name(label: str) -> str:
    """A label as a safe single folder name: no separators, no ``..``, no reserved or hidden names.

    >>> folder_name("../etc/passwd"), folder_name("CON"), folder_name(" dog / cat ")
    ('_etc_passwd', 'CON_', 'dog _ cat')
    """
    name = _BAD_CHARS.sub("_", " ".join(label.split()))
    name = name.strip(" .")  # no '..', no hidden folders, no trailing dots (Windows)
    name = name[:_MAX_NAME].strip(" .") or "_unnamed"
    if name.split(".")[0].casefold() in _RESERVED:
        name += "_"
    if name.casefold() == REVIEW_FOLDER:
        name += "_"
    return name


def unique_name(folder: str, name: str, taken: set[str]) -> str:
    """``folder/name``, or ``folder/stem (n).ext`` with the smallest free ``n``."""
    stem, ext = os.path.splitext(name)
    candidate, n = os.path.join(folder, name), 0
    while candidate in taken or os.path.lexists(candidate):
        n += 1
        candidate = os.path.join(folder, f"{stem} ({n}){ext}")
    taken.add(candidate)
    return candidate


def _target_folder(
    row: sqlite3.Row, opts: FilingOptions, min_confidence: float, label_thresholds: Mapping[str, float]
) -> str | None:
    out = str(opts.sort_into)
    if row["review_label"]:
        return os.path.join(out, folder_name(row["review_label"]))
    if row["status"] == "error" or row["top_label"] is None:
        return None
    if row["top_score"] >= label_thresholds.get(row["top_label"], min_confidence):
        return os.path.join(out, folder_name(row["top_label"]))
    return None if opts.review_in_place else os.path.join(out, REVIEW_FOLDER)


def plan_filing(
    conn: sqlite3.Connection,
    file_ids: Iterable[int],
    opts: FilingOptions,
    min_confidence: float,
    label_thresholds: Mapping[str, float] | None = None,
) -> list[PlannedOp]:
    """The operations that put each file where it belongs; files already there need none.

    A file already filed under ``OUT`` (a placement) but now belonging in
    another folder (a review decision, new labels) is moved there from its
    placement, never copied twice.
    """
    out = str(opts.sort_into)
    taken: set[str] = set()
    plan = []
    for file_id in file_ids:
        row = conn.execute("SELECT * FROM lib_files WHERE id=?", (file_id,)).fetchone()
        folder = _target_folder(row, opts, min_confidence, label_thresholds or {}) if row else None
        if folder is None:
            continue
        placed = conn.execute(
            "SELECT path FROM lib_placements WHERE file_id=? AND out_root=?", (file_id, out)
        ).fetchone()
        if placed and os.path.lexists(placed["path"]):
            if os.path.dirname(placed["path"]) == folder:
                continue
            src, action = placed["path"], "move"
        else:
            src, action = row["path"], "move" if opts.move else "copy"
        dst = unique_name(folder, os.path.basename(row["path"]), taken)
        plan.append(
            PlannedOp(
                file_id=file_id,
                action=action,
                src=src,
                dst=dst,
                content_hash=row["content_hash"],
                size=row["size"],
            )
        )
    return plan


def check_writable(folder: Path) -> None:
    """Fail before any operation when the output folder cannot be created or written.

    Raises:
        FilingError: with the reason; no file has been touched.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".earmark-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as ex:
        raise FilingError(
            f"cannot write to {folder}: {ex.strerror or ex}; no file was copied or moved"
        ) from None


def execute(db: Database, run_id: int, plan: list[PlannedOp], out_root: str) -> Iterator[OpResult]:
    """Journal and perform each operation; one failure is reported and the rest go on."""
    for p in plan:
        op = plan_op(
            db,
            run_id,
            file_id=p.file_id,
            action=p.action,
            src=p.src,
            dst=p.dst,
            out_root=out_root,
            content_hash=p.content_hash,
            size=p.size,
        )
        try:
            perform(db, op)
        except (OSError, FilingError) as ex:
            reason = (
                str(ex) if isinstance(ex, FilingError) else f"{ex.strerror or ex} ({ex.filename or p.dst})"
            )
            set_op_state(db, op.id, "failed", reason)
            log.warning("could not %s %s: %s", p.action, p.src, reason)
            yield OpResult(op=p, state="failed", error=reason)
            continue
        yield OpResult(op=p, state="done")


def perform(db: Database, op: Op, *, exact: bool = False) -> None:
    """Carry out a journalled operation and mark it done; on error the source is intact.

    Args:
        db: the database holding the journal.
        op: a ``planned`` operation.
        exact: the destination name is required (undo); if taken, fail instead of renaming.

    Raises:
        FilingError, OSError: the operation failed; its temporary file is gone.
    """
    for _ in range(100):
        try:
            _perform_once(op)
            break
        except NameTaken:
            if exact:
                raise FilingError(f"{op.dst} now holds another file; {op.src} left where it is") from None
            # someone took the name since planning: journal a new one, then retry
            new = unique_name(os.path.dirname(op.dst), os.path.basename(op.src), set())
            with db.transaction() as c:
                c.execute("UPDATE lib_ops SET dst=? WHERE id=?", (new, op.id))
            op = Op(**{**op.__dict__, "dst": new})
    else:
        raise FilingError(f"no free name for {op.src} in {os.path.dirname(op.dst)}")
    complete_op(db, op)


def _perform_once(op: Op) -> None:
    if op.action == "delete":
        _delete_checked(op)
        return
    os.makedirs(os.path.dirname(op.dst), exist_ok=True)
    if op.action == "move" and same_filesystem(op.src, os.path.dirname(op.dst)):
        if content_hash(op.src) != op.content_hash:
            raise FilingError(f"{op.src} changed since it was tagged; re-run `earmark tag` first")
        place(op.src, op.dst)
    else:
        tmp = partial_path(op.dst, op.id)
        copy_verified(op.src, tmp, op.content_hash)
        try:
            place(tmp, op.dst)
        finally:
            remove_quietly(tmp)
    if op.action == "move":
        remove_quietly(op.src)
        fsync_dir(os.path.dirname(op.src))


def _delete_checked(op: Op) -> None:
    """Remove ``dst`` only when ``src`` still holds the same bytes (so one copy always remains)."""
    if not os.path.lexists(op.dst):
        return
    if content_hash(op.dst) != op.content_hash:
        raise FilingError(f"{op.dst} changed since it was filed; left in place")
    if not os.path.isfile(op.src) or content_hash(op.src) != op.content_hash:
        raise FilingError(f"{op.src} no longer holds the original; {op.dst} left in place")
    os.unlink(op.dst)
    fsync_dir(os.path.dirname(op.dst))
