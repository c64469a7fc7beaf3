"""What the page shows, as HTML and SVG strings (pure: a Prediction in, markup out).

Server-rendered markup keeps the page light (no plotting library, nothing
re-computed in the browser) and testable: every element carries ``data-label``
so tests and scripts can read results without parsing text. Every label is
escaped: labels are user text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from itertools import pairwise

from ..types import Prediction
from .i18n import foreign_script_labels, t

__all__ = [
    "LiveResult",
    "bars_html",
    "export_csv",
    "export_json",
    "live_html",
    "summary_html",
    "timeline_html",
]

MAX_LANES = 8


def _pct(p: float) -> str:
    return f"{p * 100:.1f}%"


# Okabe & Ito's palette: eight colours that stay apart for the common colour-vision deficiencies
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7F7F7F")


def label_colors(labels: Sequence[str]) -> dict[str, str]:
    """A colour per label, by position in the label set: neighbours in a set never share one.

    Past eight labels the colours repeat (the legend and the labels in each tooltip tell them apart).
    """
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(dict.fromkeys(labels))}


def uncertain_text(label: str, probability: float, lang: str) -> str:
    """What a below-threshold answer reads as, everywhere: "uncertain (best guess: X, 68.0%)"."""
    return t("uncertain_guess", lang, label=label, p=_pct(probability))


def warnings_html(labels: Sequence[str], lang: str) -> str:
    foreign = foreign_script_labels(labels)
    if not foreign:
        return ""
    text = t("warn_script", lang, labels=", ".join(foreign))
    return f'<div class="em-warning" role="alert">⚠ {escape(text)}</div>'


def summary_html(p: Prediction, lang: str, *, pack: str | None = None) -> str:
    """The answer (or "uncertain"), the top 3, what was heard (and the pack that scored), label warnings."""
    top = p.top
    if p.uncertain:
        detail = t("uncertain_detail", lang, label=top.label, p=_pct(top.probability), t=_pct(p.threshold))
        answer = (
            f'<div class="em-answer em-uncertain">{escape(uncertain_text(top.label, top.probability, lang))}</div>'
            f'<div class="em-detail">{escape(detail)}</div>'
        )
    else:
        answer = (
            f'<div class="em-answer">{escape(top.label)} '
            f'<span class="em-p">{_pct(top.probability)}</span></div>'
        )
    items = "".join(
        f'<li data-label="{escape(s.label)}">{escape(s.label)}: {_pct(s.probability)}</li>'
        for s in p.scores[:3]
    )
    meta = t("duration", lang, s=f"{p.duration_s:.1f}", n=len(p.windows) or 1, model=p.model)
    if pack is not None:
        meta += "; " + t("pack_used", lang, name=pack)
    return (
        f'<div class="em-summary" data-label="{escape(p.label or "")}" data-top="{escape(top.label)}" '
        f'data-uncertain="{str(p.uncertain).lower()}">{answer}'
        f'<div class="em-top3"><b>{escape(t("top3", lang))}</b><ol>{items}</ol></div>'
        f'<div class="em-meta">{escape(meta)}</div>{warnings_html(p.labels, lang)}</div>'
    )


def bars_html(p: Prediction, lang: str) -> str:
    """A bar per label, best first; the top 3 stand out; a mark shows the threshold."""
    colors = label_colors(p.labels)
    rows = []
    for rank, s in enumerate(p.scores):
        cls = "em-bar-row em-top" if rank < 3 else "em-bar-row"
        rows.append(
            f'<div class="{cls}" data-label="{escape(s.label)}" role="listitem">'
            f'<span class="em-bar-label" title="{escape(s.label)}">{escape(s.label)}</span>'
            f'<span class="em-bar-track"><span class="em-bar-fill" style="width:{s.probability * 100:.2f}%;'
            f'background:{colors[s.label]}"></span>'
            f'<span class="em-bar-threshold" style="left:{p.threshold * 100:.1f}%" '
            f'title="{escape(t("threshold_mark", lang))}"></span></span>'
            f'<span class="em-bar-value">{_pct(s.probability)}</span></div>'
        )
    return f'<div class="em-bars" role="list">{"".join(rows)}</div>'


def _lanes(p: Prediction) -> list[str]:
    """Labels worth a lane: each window's best, then those in segments, then the clip's best."""
    order: list[str] = []
    for w in p.windows:
        best = max(range(len(p.labels)), key=lambda j: w.probabilities[j])
        order.append(p.labels[best])
    order += [seg.label for seg in p.timeline] + [s.label for s in p.scores[:3]]
    return list(dict.fromkeys(order))[:MAX_LANES]


def _cell_edges(p: Prediction) -> list[tuple[float, float]]:
    """Each window's share of the time axis: from halfway to its neighbours' centres."""
    mids = [(w.start_s + w.end_s) / 2 for w in p.windows]
    edges = [0.0] + [(a + b) / 2 for a, b in pairwise(mids)] + [p.duration_s]
    return list(pairwise(edges))


def timeline_html(p: Prediction, lang: str) -> str:
    """Labels over time (one lane per label, shade = probability, solid bars = segments) and a segment table."""
    lanes = _lanes(p)
    width, lane_h, left, top = 720.0, 26.0, 130.0, 8.0
    span = max(p.duration_s, 1e-6)

    def x(seconds: float) -> float:
        return left + (width - left - 10) * seconds / span

    colors = label_colors(p.labels)
    parts = []
    for i, label in enumerate(lanes):
        y = top + i * lane_h
        j = p.labels.index(label)
        color = colors[label]
        parts.append(
            f'<text x="{left - 6}" y="{y + 17}" text-anchor="end" class="em-lane-label">'
            f"{escape(label[:18])}</text>"
        )
        for (a, b), w in zip(_cell_edges(p), p.windows, strict=True):
            prob = w.probabilities[j]
            parts.append(
                f'<rect x="{x(a):.1f}" y="{y + 3}" width="{max(x(b) - x(a), 0.5):.1f}" height="{lane_h - 6}" '
                f'fill="{color}" fill-opacity="{0.08 + 0.6 * prob:.3f}"><title>{escape(label)} '
                f"{w.start_s:g}-{w.end_s:g} s: {_pct(prob)}</title></rect>"
            )
        for seg in (s for s in p.timeline if s.label == label):
            parts.append(
                f'<rect class="em-segment" data-label="{escape(label)}" x="{x(seg.start_s):.1f}" '
                f'y="{y + 9}" width="{max(x(seg.end_s) - x(seg.start_s), 1):.1f}" height="{lane_h - 18}" '
                f'fill="{color}"/>'
            )
    height = top + len(lanes) * lane_h + 22
    step = _tick_step(span)
    ticks = "".join(
        f'<text x="{x(s):.1f}" y="{height - 6}" text-anchor="middle" class="em-tick">{s:g}s</text>'
        for s in _frange(0, span, step)
    )
    svg = (
        f'<svg class="em-timeline-svg" data-testid="timeline-svg" viewBox="0 0 {width:g} {height:g}" '
        f'role="img" aria-label="{escape(t("timeline", lang))}">{"".join(parts)}{ticks}</svg>'
    )
    return f'<div class="em-timeline"><h4>{escape(t("timeline", lang))}</h4>{svg}{_segments_table(p, lang)}</div>'


def _segments_table(p: Prediction, lang: str) -> str:
    head = "".join(
        f"<th>{escape(t(k, lang))}</th>" for k in ("col_label", "col_start", "col_end", "col_peak")
    )
    rows = (
        "".join(
            f'<tr data-label="{escape(s.label)}"><td>{escape(s.label)}</td><td>{s.start_s:.1f}</td>'
            f"<td>{s.end_s:.1f}</td><td>{_pct(s.score)}</td></tr>"
            for s in p.timeline
        )
        or f'<tr><td colspan="4">{escape(t("nothing_heard", lang))}</td></tr>'
    )
    return (
        f'<h4>{escape(t("segments", lang))}</h4><table class="em-segments">'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def _tick_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 12:
            return float(step)
    return 7200.0


def _frange(a: float, b: float, step: float) -> list[float]:
    n = int(b // step)
    return [a + i * step for i in range(n + 1)]


@dataclass(frozen=True)
class LiveResult:
    """One live classification: when (seconds of audio heard), what, how sure, how loud, among which labels."""

    at_s: float
    top: str
    probability: float
    uncertain: bool
    level_dbfs: float
    labels: tuple[str, ...] = ()


def _live_answer(r: LiveResult, lang: str) -> str:
    return uncertain_text(r.top, r.probability, lang) if r.uncertain else f"{r.top} ({_pct(r.probability)})"


def live_legend(colors: dict[str, str], lang: str) -> str:
    """What the strip's colours mean: a swatch per label, and what a faint bar is."""
    items = "".join(
        f'<li data-label="{escape(label)}"><span class="em-swatch" style="background:{color}"></span>'
        f"{escape(label)}</li>"
        for label, color in colors.items()
    )
    faint = (
        f'<li class="em-legend-faint"><span class="em-swatch em-swatch-faint"></span>'
        f"{escape(t('live_legend_faint', lang))}</li>"
    )
    return f'<ul class="em-legend" aria-label="{escape(t("live_legend", lang))}">{items}{faint}</ul>'


def live_html(
    history: Sequence[LiveResult],
    lang: str,
    *,
    window_s: float,
    every_s: float,
    heard_s: float | None = None,
    skipped: int = 0,
) -> str:
    """The live panel: the current answer, a rolling strip of recent answers with its legend, and a table.

    ``heard_s`` (audio received) and the newest result's time are kept in ``data-heard-s`` and
    ``data-classified-s``; ``skipped`` windows (the model could not keep up) are said, not hidden.
    """
    cadence_text = t("live_cadence", lang, window=f"{window_s:g}", every=f"{every_s:g}")
    cadence = f'<div class="em-meta">{escape(cadence_text)}</div>'
    heard = heard_s if heard_s is not None else (history[-1].at_s if history else 0.0)
    attrs = (
        f'data-count="{len(history)}" data-heard-s="{heard:.1f}" '
        f'data-classified-s="{history[-1].at_s if history else 0.0:.1f}" data-skipped="{skipped}"'
    )
    if not history:
        waiting = escape(t("live_waiting", lang))
        return f'<div class="em-live" {attrs}><div class="em-answer">{waiting}</div>{cadence}</div>'
    now = history[-1]
    recent = list(history[-40:])
    colors = label_colors([*now.labels, *(r.top for r in recent)])
    bar_w = 720 / 40
    bars = "".join(
        f'<rect x="{i * bar_w:.1f}" y="{60 - 56 * r.probability:.1f}" width="{bar_w - 2:.1f}" '
        f'height="{56 * r.probability:.1f}" fill="{colors[r.top]}" data-label="{escape(r.top)}" '
        f'fill-opacity="{0.3 if r.uncertain else 0.95}"><title>{r.at_s:.0f}s '
        f"{escape(_live_answer(r, lang))}</title></rect>"
        for i, r in enumerate(recent)
    )
    rows = "".join(
        f'<tr class="em-live-row{" em-uncertain" if r.uncertain else ""}" data-label="{escape(r.top)}" '
        f'data-uncertain="{str(r.uncertain).lower()}">'
        f"<td>{r.at_s:.1f}s</td><td>{escape(_live_answer(r, lang))}</td>"
        f"<td>{r.level_dbfs:.1f} dBFS</td></tr>"
        for r in reversed(history[-12:])
    )
    head = "".join(f"<th>{escape(t(k, lang))}</th>" for k in ("live_time", "live_answer", "live_level"))
    behind = (
        f'<div class="em-meta em-skipped" role="status">{escape(t("live_skipped", lang, n=skipped))}</div>'
        if skipped
        else ""
    )
    answer = (
        escape(uncertain_text(now.top, now.probability, lang))
        if now.uncertain
        else f'{escape(now.top)} <span class="em-p">{_pct(now.probability)}</span>'
    )
    return (
        f'<div class="em-live" {attrs} data-label="{escape(now.top)}" '
        f'data-uncertain="{str(now.uncertain).lower()}">'
        f'<div class="em-answer{" em-uncertain" if now.uncertain else ""}">{answer} '
        f'<span class="em-level">{escape(t("live_level", lang))} {now.level_dbfs:.1f} dBFS</span></div>'
        f'{cadence}{behind}<svg class="em-live-svg" viewBox="0 0 720 62" role="img" '
        f'aria-label="{escape(t("live_strip", lang))}">{bars}</svg>{live_legend(colors, lang)}'
        f'<h4>{escape(t("live_history", lang))}</h4><table class="em-live-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def export_json(p: Prediction, *, pack: str | None = None) -> str:
    """The full result, per-window scores included (and the classifier pack that scored it, if any)."""
    doc = p.to_dict(windows=True)
    if pack is not None:
        doc["pack"] = pack
    return json.dumps(doc, ensure_ascii=False, indent=2)


def export_csv(p: Prediction) -> str:
    """One row for the clip, then one per window; a column per label (probabilities)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["row", "start_s", "end_s", "answer", *p.labels])
    clip = {s.label: s.probability for s in p.scores}
    w.writerow(
        ["clip", 0, round(p.duration_s, 3), p.label or "uncertain", *(clip[label] for label in p.labels)]
    )
    for i, win in enumerate(p.windows):
        w.writerow([f"window {i + 1}", win.start_s, win.end_s, "", *win.probabilities])
    return out.getvalue()
