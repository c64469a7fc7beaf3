"""The page's Events tab: monitor events newest first, each with its clip, a spectrogram and a verdict.

What BirdNET-Go and Frigate users expect: the list refreshes itself (every
``REFRESH_S``), filters by label, source and day, counts per label per hour or
day, and on the chosen event its clip player, a spectrogram picture, and "correct"
/ "false alarm" buttons. Verdicts are stored (:mod:`earmark.monitor.feedback`),
shown in the list, and exported as labelled clips plus a manifest that
``earmark calibrate`` and ``earmark fit`` read.

The handlers are module-level functions of the database, tested without a
browser; :func:`build_events_tab` wires them to components. Text follows the
browser's language. The REST routes are in :mod:`.events_routes`.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, ConfigError
from ..monitor import feedback as fb
from ..monitor.events import EventLog, parse_since, public_event
from ..paths import earmark_home
from .events_routes import EVENT_ID, _clip_path
from .i18n import pick_language, t

__all__ = [
    "REFRESH_S",
    "build_events_tab",
    "event_clip",
    "event_rows",
    "event_view",
    "events_table",
    "export_examples",
    "label_counts",
    "set_verdict",
]

REFRESH_S = 10.0
TABLE_KEYS = ("ev_started", "ev_source", "ev_label", "ev_length", "ev_peak", "ev_verdict", "ev_clip", "ev_id")
SINCE_CHOICES = ["1h", "24h", "7d", "30d", "all"]
PLAY_RATE = 24_000


def _headers(lang: str) -> list[str]:
    return [t(k, lang) for k in TABLE_KEYS]


def _verdict_text(verdict: str | None, lang: str) -> str:
    return t(f"ev_verdict_{verdict}", lang) if verdict in fb.VERDICTS else ""


def event_rows(
    db: Any,
    *,
    label: str | None = None,
    source: str | None = None,
    day: str | None = None,
    limit: int = 200,
    lang: str = "en",
) -> list[list[Any]]:
    """Rows of the events list, newest first (the id last)."""
    rows = fb.find_events(db, label=label or None, source=source or None, day=day or None, limit=limit)
    return [
        [
            r["started_at"][:19].replace("T", " "),
            r["source"],
            r["label"],
            None if r["end_s"] is None else round(r["end_s"] - r["start_s"], 1),
            round(r["peak"], 3),
            _verdict_text(r["verdict"], lang),
            "♪" if r.get("clip_path") else "",
            r["id"],
        ]
        for r in rows
    ]


def events_table(
    log: EventLog, since: str | None = "24h", label: str | None = None, limit: int = 200
) -> tuple[list[list[Any]], list[str]]:
    """Rows (started, source, rule, label, length, peak, status, id) since a time, and the ids with a clip."""
    rows = log.list_events(
        since=parse_since(None if since in (None, "all") else since), label=label or None, limit=limit
    )
    table = [
        [
            r["started_at"][:19].replace("T", " "),
            r["source"],
            r["rule"],
            r["label"],
            None if r["end_s"] is None else round(r["end_s"] - r["start_s"], 1),
            round(r["peak"], 3),
            r["closed_by"] or r["status"],
            r["id"],
        ]
        for r in rows
    ]
    return table, [r["id"] for r in rows if r.get("clip_path")]


def event_clip(log: EventLog, event_id: str | None, *, rate: int = PLAY_RATE) -> tuple[Any, dict[str, Any]]:
    """``((rate, int16 samples) or None, event details)`` for the player."""
    from ..audio import decode

    if not event_id or not re.match(EVENT_ID, event_id):
        return None, {}
    row = log.get(event_id)
    if row is None:
        return None, {}
    path = _clip_path(row, None)
    if path is None:
        return None, public_event(row)
    samples = decode(path, sample_rate=rate)
    return (rate, (np.clip(samples, -1, 1) * 32767).astype(np.int16)), public_event(row)


def event_view(db: Any, event_id: str | None, lang: str = "en") -> tuple[Any, Any, str]:
    """What the chosen event shows: ``(player value, spectrogram RGB or None, details in Markdown)``."""
    from .spectrogram import spectrogram_rgb

    if not event_id:
        return None, None, ""
    log = EventLog(db)
    try:
        audio, details = event_clip(log, event_id)
    except AudioError as ex:
        audio, details = None, public_event(log.get(event_id) or {"id": event_id})
        details["clip_error"] = str(ex)
    if not details:
        return None, None, t("ev_gone", lang)
    picture = None
    if audio is not None:
        rate, samples = audio
        picture = spectrogram_rgb(samples.astype(np.float32) / 32767, rate)
    verdict = fb.verdict_of(db, event_id)
    lines = [
        f"**{escape(str(details.get('label', '')))}** · {escape(str(details.get('source', '')))} · "
        f"{escape(str(details.get('started_at', ''))[:19].replace('T', ' '))} UTC",
        t(
            "ev_details",
            lang,
            peak=f"{details.get('peak', 0):.3f}",
            rule=escape(str(details.get("rule", ""))),
        ),
    ]
    if verdict:
        lines.append(t("ev_marked", lang, verdict=_verdict_text(verdict, lang)))
    if audio is None:
        lines.append(t("ev_no_clip", lang))
    return audio, picture, "  \n".join(lines)


def label_counts(
    db: Any,
    by: str,
    *,
    label: str | None = None,
    source: str | None = None,
    day: str | None = None,
    lang: str = "en",
) -> dict[str, Any]:
    """The counts table (``{"headers", "data"}``): one row per hour or day, a column per label."""
    labels, rows = fb.count_events(db, "hour" if by == "hour" else "day", label=label, source=source, day=day)
    return {"headers": [t("ev_when_" + ("hour" if by == "hour" else "day"), lang), *labels], "data": rows}


def set_verdict(db: Any, event_id: str | None, verdict: str | None, lang: str = "en") -> str:
    """Store (or, with ``verdict=None``, clear) the verdict on an event; returns what to say."""
    if not event_id:
        return t("ev_pick_first", lang)
    try:
        if verdict is None:
            fb.clear_verdict(db, event_id)
        else:
            fb.mark_event(db, event_id, verdict, via="web")
    except ConfigError as ex:
        return str(ex)
    return t("ev_saved", lang, verdict=_verdict_text(verdict, lang) or t("ev_verdict_none", lang))


def export_examples(db: Any, folder: str, background: str, lang: str = "en") -> str:
    """Export judged events as labelled clips; returns what to say (where, how many, what to run next)."""
    try:
        summary = fb.export_feedback(
            db, folder or default_export_dir(), background_label=background or fb.BACKGROUND
        )
    except ConfigError as ex:
        return str(ex)
    if not summary.examples:
        return t("ev_export_none", lang)
    counts = ", ".join(f"{label}: {n}" for label, n in sorted(summary.examples.items()))
    text = t(
        "ev_exported", lang, n=sum(summary.examples.values()), counts=counts, manifest=str(summary.manifest)
    )
    if summary.without_clip:
        text += "  \n" + t("ev_export_noclip", lang, n=summary.without_clip)
    return text


def default_export_dir() -> Path:
    return earmark_home() / "feedback"


def _lang(request: Any) -> str:
    return pick_language(request.headers.get("accept-language") if request is not None else None)


def build_events_tab(db: Any) -> None:
    """Add the Events tab's components to the current ``gr.Blocks`` / ``gr.Tab`` context.

    Args:
        db: the :class:`earmark.store.Database` the monitor writes to.
    """
    try:
        import gradio as gr
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError("the Events tab", "ui") from None
    from gradio.context import Context

    from .ui import gradio_types as _gradio_types
    from .ui import ui_text as i18n

    fb.migrate(db)
    gr.Markdown(i18n("ev_intro"))
    with gr.Row():
        label = gr.Dropdown(
            [("—", "")], value="", label=i18n("ev_filter_label"), scale=2, elem_id="em-ev-label"
        )
        source = gr.Dropdown(
            [("—", "")], value="", label=i18n("ev_filter_source"), scale=2, elem_id="em-ev-source"
        )
        day = gr.Dropdown([("—", "")], value="", label=i18n("ev_filter_day"), scale=2, elem_id="em-ev-day")
        refresh = gr.Button(i18n("ev_refresh"), scale=1, elem_id="em-ev-refresh")
    status = gr.Markdown(elem_id="em-ev-status")
    table = gr.Dataframe(headers=_headers("en"), interactive=False, wrap=True, elem_id="em-ev-table")
    selected = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            player = gr.Audio(label=i18n("ev_clip"), type="numpy", interactive=False, elem_id="em-ev-player")
            details = gr.Markdown(elem_id="em-ev-details")
            with gr.Row():
                correct = gr.Button(i18n("ev_mark_correct"), variant="primary", elem_id="em-ev-correct")
                false_alarm = gr.Button(i18n("ev_mark_false"), variant="stop", elem_id="em-ev-false")
                unmark = gr.Button(i18n("ev_mark_clear"), size="sm", elem_id="em-ev-unmark")
            saved = gr.Markdown(elem_id="em-ev-saved")
        with gr.Column(scale=1):
            picture = gr.Image(
                label=i18n("ev_spectrogram"), type="numpy", interactive=False, elem_id="em-ev-spectrogram"
            )
    gr.Markdown(i18n("ev_counts_title"))
    by = gr.Radio([(i18n("ev_by_hour"), "hour"), (i18n("ev_by_day"), "day")], value="day", show_label=False)
    counts = gr.Dataframe(interactive=False, elem_id="em-ev-counts")
    gr.Markdown(i18n("ev_export_title"))
    with gr.Row():
        folder = gr.Textbox(
            value=str(default_export_dir()), label=i18n("ev_export_folder"), scale=3, elem_id="em-ev-folder"
        )
        background = gr.Textbox(value=fb.BACKGROUND, label=i18n("ev_export_background"), scale=2)
        export = gr.Button(i18n("ev_export"), scale=1, elem_id="em-ev-export")
    exported = gr.Markdown(elem_id="em-ev-exported")

    filters = [label, source, day, by]

    def listing(lab: str, src: str, d: str, per: str, current: str | None, lang: str) -> tuple[Any, ...]:
        rows = event_rows(db, label=lab, source=src, day=d, lang=lang)
        note = "" if rows else t("ev_empty", lang)
        view: tuple[Any, ...] = (gr.skip(), gr.skip(), gr.skip(), gr.skip())
        if current is None and rows:  # nothing chosen yet: the newest event
            current = rows[0][-1]
            view = (current, *event_view(db, current, lang))
        counts_value = label_counts(db, per, label=lab or None, source=src or None, day=d or None, lang=lang)
        return ({"headers": _headers(lang), "data": rows}, note, counts_value, *view)

    listing_out = [table, status, counts, selected, player, picture, details]

    def on_refresh(
        lab: str, src: str, d: str, per: str, current: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        return listing(lab, src, d, per, current, _lang(request))

    def on_open(
        lab: str, src: str, d: str, per: str, current: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        choices = [
            gr.Dropdown(choices=[("—", ""), *((v, v) for v in fb.distinct(db, column))])
            for column in ("label", "source", "day")
        ]
        return (*choices, *listing(lab, src, d, per, current, _lang(request)))

    def on_pick(table_value: Any, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        rows = table_value.values.tolist() if hasattr(table_value, "values") else table_value
        if not rows or row is None or row >= len(rows):
            return (gr.skip(),) * 4
        event_id = str(rows[row][-1])
        return (event_id, *event_view(db, event_id, _lang(request)))

    for fn in (on_refresh, on_open, on_pick):
        _gradio_types(fn)

    @_gradio_types
    def on_export(folder_text: str, background_text: str, request: gr.Request) -> str:
        return export_examples(db, folder_text, background_text, _lang(request))

    def on_mark(verdict: str | None) -> Any:
        @_gradio_types
        def handler(
            event_id: str | None, lab: str, src: str, d: str, per: str, request: gr.Request
        ) -> tuple[Any, ...]:
            lang = _lang(request)
            said = set_verdict(db, event_id, verdict, lang)
            rows = event_rows(db, label=lab, source=src, day=d, lang=lang)
            return said, {"headers": _headers(lang), "data": rows}, event_view(db, event_id, lang)[2]

        return handler

    inputs = [*filters, selected]
    open_out = [label, source, day, *listing_out]
    if Context.root_block is not None:
        Context.root_block.load(on_open, inputs, open_out, show_progress="hidden")
    tab = Context.block
    if isinstance(tab, gr.Tab):
        tab.select(on_open, inputs, open_out, show_progress="hidden")
    for trigger in (refresh.click, label.change, source.change, day.change, by.change):
        trigger(on_refresh, inputs, listing_out, show_progress="hidden")
    gr.Timer(REFRESH_S).tick(on_refresh, inputs, listing_out, show_progress="hidden")
    table.select(on_pick, [table], [selected, player, picture, details])
    for button, verdict in ((correct, "correct"), (false_alarm, "false_alarm"), (unmark, None)):
        button.click(on_mark(verdict), [selected, label, source, day, by], [saved, table, details])
    export.click(on_export, [folder, background], exported)
