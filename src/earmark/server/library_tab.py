"""The Library tab of the web page (Gradio 6): search, play, review queue.

The handlers are module-level functions of ``(db, classifier, ...)`` so they
are tested without a browser; :func:`build` only wires them to components.
The review queue is loaded with the page and again whenever the tab is opened,
so the first Accept accepts what is shown. Text follows the browser's language.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AudioError, ConfigError
from ..library.review import decide, review_item, review_queue
from ..library.search import search_text
from .i18n import pick_language, t

__all__ = [
    "build",
    "build_library_tab",
    "decide_and_next",
    "load_audio",
    "next_review",
    "search_headers",
    "search_rows",
]

SEARCH_KEYS = ("lib_h_score", "lib_h_from", "lib_h_to", "lib_h_label", "lib_h_path", "lib_h_id")
PLAY_RATE = 48_000


def search_rows(
    db: Any, classifier: Any, query: str, k: int, lang: str = "en"
) -> tuple[list[list[Any]], str]:
    """Rows for the results table and a status line."""
    try:
        hits = search_text(db, classifier, query, k=int(k))
    except ConfigError as ex:
        return [], str(ex)
    rows = [
        [i, round(h.score, 3), round(h.start_s, 1), round(h.end_s, 1), h.top_label or "", h.path, h.file_id]
        for i, h in enumerate(hits, 1)
    ]
    return rows, t("lib_found", lang, n=len(rows)) if rows else t("lib_empty", lang)


def search_headers(lang: str = "en") -> list[str]:
    """Column names of the search results in the browser's language."""
    return ["#", *(t(k, lang) for k in SEARCH_KEYS)]


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


def next_review(db: Any, lang: str = "en") -> tuple[int | None, str, list[str]]:
    """The next file to review: (file id, description in Markdown, label choices)."""
    queue = review_queue(db, limit=1)
    if not queue:
        return None, t("lib_review_empty", lang), []
    item = queue[0]
    top = " · ".join(f"**{lab}** {p:.2f}" for lab, p in item.top)
    return item.file_id, f"`{item.path}`  \n{top}", list(item.labels)


def decide_and_next(
    db: Any, file_id: int | None, decision: str, label: str | None, lang: str = "en"
) -> tuple[int | None, str, list[str]]:
    """Store a decision for ``file_id`` (relabel uses ``label``), then return the next item."""
    if file_id is not None:
        try:
            decide(db, int(file_id), decision, label=label, via="web")
        except ConfigError as ex:
            fid, text, labels = next_review(db, lang)
            return fid, f"{ex}\n\n{text}", labels
    return next_review(db, lang)


def _lang(request: Any) -> str:
    return pick_language(request.headers.get("accept-language") if request is not None else None)


def build(classifier: Any, db: Any) -> None:
    import gradio as gr

    from .ui import gradio_types as _gradio_types
    from .ui import ui_text as i18n

    gr.Markdown(i18n("lib_search_title"))
    with gr.Row():
        query = gr.Textbox(
            label=i18n("lib_query"), placeholder="glass breaking", scale=4, elem_id="em-lib-query"
        )
        k = gr.Slider(1, 100, value=20, step=1, label=i18n("lib_k"), scale=1)
        go = gr.Button(i18n("lib_search"), variant="primary", scale=1, elem_id="em-lib-search")
    status = gr.Markdown(elem_id="em-lib-status")
    results = gr.Dataframe(headers=search_headers(), interactive=False, wrap=True, elem_id="em-lib-results")
    player = gr.Audio(label=i18n("lib_play"), type="numpy", interactive=False)

    def on_search(q: str, n: float, request: gr.Request) -> tuple[dict[str, Any], str]:
        lang = _lang(request)
        rows, said = search_rows(db, classifier, q, int(n), lang)
        return {"headers": search_headers(lang), "data": rows}, said

    def on_load(request: gr.Request) -> dict[str, Any]:
        return {"headers": search_headers(_lang(request)), "data": []}

    def on_select(table: Any, evt: gr.SelectData) -> Any:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        rows = table.values.tolist() if hasattr(table, "values") else table
        return load_audio(db, int(rows[row][-1])) if rows and row < len(rows) else None

    _gradio_types(on_search)
    _gradio_types(on_select)
    _gradio_types(on_load)

    go.click(on_search, [query, k], [results, status])
    query.submit(on_search, [query, k], [results, status])
    results.select(on_select, [results], player)
    from gradio.context import Context

    if Context.root_block is not None:  # the empty table's column names in the browser's language
        Context.root_block.load(on_load, None, results, show_progress="hidden")
    _build_review(gr, db, i18n)


def _build_review(gr: Any, db: Any, i18n: Any) -> None:
    from gradio.context import Context

    from .ui import gradio_types as _gradio_types

    gr.Markdown(i18n("lib_review_title"))
    current = gr.State(None)
    info = gr.Markdown(elem_id="em-review-info")
    audio = gr.Audio(label=i18n("lib_listen"), type="numpy", interactive=False, elem_id="em-review-audio")
    label = gr.Dropdown(choices=[], label=i18n("lib_relabel_label"), allow_custom_value=True)
    with gr.Row():
        accept = gr.Button(i18n("lib_accept"), variant="primary", elem_id="em-review-accept")
        relabel = gr.Button(i18n("lib_relabel"), elem_id="em-review-relabel")
        skip = gr.Button(i18n("lib_skip"), elem_id="em-review-skip")
        refresh = gr.Button(i18n("lib_refresh"), elem_id="em-review-refresh")

    def show(fid: int | None, text: str, labels: list[str]) -> tuple[Any, ...]:
        return fid, text, gr.Dropdown(choices=labels, value=None), load_audio(db, fid)

    @_gradio_types
    def on_open(request: gr.Request) -> tuple[Any, ...]:
        return show(*next_review(db, _lang(request)))

    def on_decide(decision: str) -> Any:
        @_gradio_types
        def handler(fid: int | None, lab: str | None, request: gr.Request) -> tuple[Any, ...]:
            return show(
                *decide_and_next(db, fid, decision, lab if decision == "relabel" else None, _lang(request))
            )

        return handler

    outputs = [current, info, label, audio]
    refresh.click(on_open, None, outputs)
    # the queue is there when the page opens and fresh whenever the tab is opened
    if Context.root_block is not None:
        Context.root_block.load(on_open, None, outputs, show_progress="hidden")
    tab = Context.block
    if isinstance(tab, gr.Tab):
        tab.select(on_open, None, outputs, show_progress="hidden")
    accept.click(on_decide("accept"), [current, label], outputs)
    relabel.click(on_decide("relabel"), [current, label], outputs)
    skip.click(on_decide("skip"), [current, label], outputs)


def build_library_tab(classifier: Any, db: Any) -> None:
    """The whole Library tab in the current ``gr.Tab`` context: search, review queue, duplicate groups."""
    from .library_dups_tab import build as build_duplicates

    build(classifier, db)
    build_duplicates(db)
