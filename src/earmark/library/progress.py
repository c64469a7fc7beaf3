"""Progress events a tagging run yields; front ends draw them (the CLI as a progress bar)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .filing import OpResult

__all__ = ["FileFiled", "FileTagged", "RunFinished", "RunStarted", "TagEvent"]


@dataclass(frozen=True, kw_only=True)
class RunStarted:
    """The run has its id and knows how many files it will look at."""

    run_id: int
    total: int


@dataclass(frozen=True, kw_only=True)
class FileTagged:
    """One file is tagged.

    Attributes:
        path: absolute path.
        file_id: its ``lib_files`` id (0 when it could not even be read).
        how: ``skipped`` (stored result reused), ``rescored`` (stored embeddings,
            new labels) or ``embedded`` (decoded now).
        status: ``auto``, ``review`` or ``error``.
        top_label: best label (None on error).
        top_score: its probability.
        error: why it failed.
        note: decoder warnings (partly corrupt audio).
    """

    path: str
    file_id: int
    how: str
    status: str
    top_label: str | None = None
    top_score: float | None = None
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class FileFiled:
    """One filing operation finished (or was planned, in a dry run)."""

    result: OpResult


@dataclass(frozen=True, kw_only=True)
class RunFinished:
    """The run is over; ``counts`` has skipped/rescored/embedded, auto/review/error, filed/filing_failed."""

    run_id: int
    counts: dict[str, int] = field(default_factory=dict)


TagEvent = RunStarted | FileTagged | FileFiled | RunFinished
