"""The Library tab's duplicates section: groups of files that are the same recording.

:func:`duplicate_rows` is a plain function of the database (tested without a
browser); :func:`build` wires it to Gradio components inside the Library tab.
"""

from __future__ import annotations

from typing import Any

from ..library.duplicates import DuplicateOptions, cached_duplicates

__all__ = ["HEADERS", "build", "duplicate_rows"]

HEADERS = ["group", "keep", "path", "duration s", "format", "Hz", "kb/s", "size", "evidence", "id"]


def _evidence(group: Any, file_id: int) -> str:
    parts = []
    for e in group.evidence:
        if file_id in (e.a, e.b):
            parts.append(f"{e.kind} {e.similarity:.2f}")
    return ", ".join(parts)


def duplicate_rows(db: Any, min_similarity: float = 0.7) -> tuple[list[list[Any]], str]:
    """Rows for the duplicates table (one per file, keeper first in each group) and a status line."""
    report = cached_duplicates(db, DuplicateOptions(min_similarity=float(min_similarity)))
    rows = [
        [
            n,
            "keep" if f.keeper else "",
            f.path,
            f.duration_s,
            f.format or "",
            f.sample_rate or "",
            round(f.bitrate_kbps) if f.bitrate_kbps else "",
            f.size,
            _evidence(g, f.file_id),
            f.file_id,
        ]
        for n, g in enumerate(report.groups, 1)
        for f in g.files
    ]
    status = f"{len(report.groups)} groups of the same recording among {report.files} files"
    if report.without_fingerprint:
        status += f" ({report.without_fingerprint} without a fingerprint: re-run `earmark tag` with fpcalc installed)"
    return rows, status


def build(db: Any) -> None:
    """Create the duplicates section inside the current Gradio context."""
    import gradio as gr

    gr.Markdown("### Duplicates")
    with gr.Row():
        threshold = gr.Slider(0.5, 1.0, value=0.7, step=0.01, label="Minimum fingerprint similarity", scale=4)
        find = gr.Button("Find duplicates", scale=1)
    status = gr.Markdown()
    table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True)
    find.click(lambda x: duplicate_rows(db, x), [threshold], [table, status])
