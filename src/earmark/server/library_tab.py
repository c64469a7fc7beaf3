"""The Library tab of the web page (Gradio 6): search, play, review queue.

The handlers are module-level functions of ``(db, classifier, ...)`` so they
are tested without a browser; :func:`build` only wires them to components.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AudioError, ConfigError
from ..library.review import decide, review_item, review_queue
from ..library.search import search_text

__all__ = ["build", "decide_and_next", "load_audio", "next_review", "search_rows"]

SEARCH_HEADERS = ["#", "score", "from s", "to s", "label", "path", "id"]
PLAY_RATE = 48_000


def search_rows(db: Any, classifier: Any, query: str, k: int) -> tuple[list[list[Any]], str]:
    """Rows for the results table and a status line."""
    try:
        hits = search_text(db, classifier, query, k=int(k))
    except ConfigError as ex:
        return [], str(ex)
    rows = [
        [i, round(h.score, 3), round(h.start_s, 1), round(h.end_s, 1), h.top_label or "", h.path, h.file_id]
        for i, h in enumerate(hits, 1)
    ]
    return rows, f"{len(rows)} files" if rows else "nothing found: tag a folder with `earmark tag` first"


def load_audio(db: Any, file_id: int | None) -> tuple[int, np.ndarray] | None:
    """(rate, samples) of a library file for ``gr.Audio``, or None when it cannot be played."""
    from ..audio import decode

    item = review_item(db, int(file_id)) if file_id is not None else None
    if item is None:
        return None
    try:
        return PLAY_RATE, decode(item.path, sample_rate=PLAY_RATE)
    except AudioError:
        return None


def next_review(db: Any) -> tuple[int | None, str, list[str]]:
    """The next file to review: (file id, description in Markdown, label choices)."""
    queue = review_queue(db, limit=1)
    if not queue:
        return None, "Nothing to review.", []
    item = queue[0]
    top = " · ".join(f"**{lab}** {p:.2f}" for lab, p in item.top)
    return item.file_id, f"`{item.path}`  \n{top}", list(item.labels)


def decide_and_next(
    db: Any, file_id: int | None, decision: str, label: str | None
) -> tuple[int | None, str, list[str]]:
    """Store a decision for ``file_id`` (relabel uses ``label``), then return the next item."""
    if file_id is not None:
        try:
            decide(db, int(file_id), decision, label=label, via="web")
        except ConfigError as ex:
            fid, text, labels = next_review(db)
            return fid, f"{ex}\n\n{text}", labels
    return next_review(db)


def build(classifier: Any, db: Any) -> None:
    import gradio as gr

    gr.Markdown("### Search the library")
    with gr.Row():
        query = gr.Textbox(label="Describe the sound", placeholder="glass breaking", scale=4)
        k = gr.Slider(1, 100, value=20, step=1, label="Files", scale=1)
        go = gr.Button("Search", variant="primary", scale=1)
    status = gr.Markdown()
    results = gr.Dataframe(headers=SEARCH_HEADERS, interactive=False, wrap=True)
    player = gr.Audio(label="Play", type="numpy", interactive=False)

    def on_search(q: str, n: float) -> tuple[list[list[Any]], str]:
        return search_rows(db, classifier, q, int(n))

    def on_select(table: Any, evt: Any) -> Any:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        rows = table.values.tolist() if hasattr(table, "values") else table
        return load_audio(db, int(rows[row][-1])) if rows and row < len(rows) else None

    # a real class, not a string annotation: Gradio fills SelectData parameters by their type
    on_select.__annotations__["evt"] = gr.SelectData

    go.click(on_search, [query, k], [results, status])
    query.submit(on_search, [query, k], [results, status])
    results.select(on_select, [results], player)
    _build_review(gr, db)


def _build_review(gr: Any, db: Any) -> None:
    gr.Markdown("### Review queue")
    current = gr.State(None)
    info = gr.Markdown()
    audio = gr.Audio(label="Listen", type="numpy", interactive=False)
    label = gr.Dropdown(choices=[], label="Label (for relabel)", allow_custom_value=True)
    with gr.Row():
        accept = gr.Button("Accept", variant="primary")
        relabel = gr.Button("Relabel")
        skip = gr.Button("Skip")
        refresh = gr.Button("Refresh")

    def show(fid: int | None, text: str, labels: list[str]) -> tuple[Any, ...]:
        return fid, text, gr.Dropdown(choices=labels, value=None), load_audio(db, fid)

    outputs = [current, info, label, audio]
    refresh.click(lambda: show(*next_review(db)), None, outputs)
    accept.click(lambda fid: show(*decide_and_next(db, fid, "accept", None)), [current], outputs)
    relabel.click(lambda fid, lab: show(*decide_and_next(db, fid, "relabel", lab)), [current, label], outputs)
    skip.click(lambda fid: show(*decide_and_next(db, fid, "skip", None)), [current], outputs)
