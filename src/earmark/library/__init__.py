"""The library: tag many files into SQLite, file them safely, review, search, export.

Public entry points (all take an :class:`earmark.store.Database`)::

    tag_paths(db, roots, TagOptions(labels=...), classifier_or_ModelRef, FilingOptions(...))
    undo_run(db, run_id)
    review_queue(db) / decide(db, file_id, "accept" | "relabel" | "skip", label=...)
    search_text(db, classifier, "glass breaking") / similar_to(db, classifier, file_or_path)
    export(db, out, fmt="csv" | "jsonl" | "parquet", windows=False)

``import earmark.library`` stays light (numpy and the standard library).
"""

from .filing import FilingOptions, folder_name
from .progress import FileFiled, FileTagged, RunFinished, RunStarted, TagEvent
from .schema import MIGRATIONS, migrate
from .tag import ModelRef, TagOptions, tag_paths
from .undo import UndoResult, undo_run

__all__ = [
    "MIGRATIONS",
    "FileFiled",
    "FileTagged",
    "FilingOptions",
    "ModelRef",
    "RunFinished",
    "RunStarted",
    "TagEvent",
    "TagOptions",
    "UndoResult",
    "folder_name",
    "migrate",
    "tag_paths",
    "undo_run",
]
