"""The Classify tab: upload, record or pick an example; labels and presets; results and downloads."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
import wave
from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np

from ..errors import EarmarkError
from ..types import DEFAULT_TEMPLATE, Prediction
from .errors import ServerBusy
from .i18n import pick_language, t
from .presets import PRESETS
from .settings import ServerSettings
from .ui_packs import ZERO_SHOT, labels_and_pack, on_pack_change, pack_choice
from .ui_render import bars_html, export_csv, export_json, summary_html, timeline_html

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack

__all__ = ["build_classify_tab", "make_examples"]

_EXPORT_MAX_AGE_S = 600.0


def make_examples(folder: Path) -> list[list[str]]:
    """Write the example sounds (synthetic, so they exist everywhere) and return Examples rows."""
    from .. import synth

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for fname, parts in (
        ("beep.wav", [("beep", 5.0)]),
        ("hum-clicks-beep-30s.wav", [("hum", 10.0), ("clicks", 10.0), ("beep", 10.0)]),
    ):
        path = folder / fname
        if not path.is_file():
            _write_wav(path, synth.sequence(parts, seed=7), synth.RATE)
        rows.append([str(path), PRESETS["preset_test"]])
    return rows


def _write_wav(path: Path, wave_f32: np.ndarray, rate: int) -> None:
    tmp = path.with_suffix(".partial")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(wave_f32, -1, 1) * 32767).astype("<i2").tobytes())
    tmp.replace(path)  # never a half-written example


class _Exports:
    """Result files for download, in one private folder; old ones are removed as new ones come."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="earmark-results-")
        self.path = Path(self._dir.name)

    def write(self, p: Prediction, pack: str | None = None) -> list[str]:
        now = time.time()
        for old in self.path.iterdir():
            if now - old.stat().st_mtime > _EXPORT_MAX_AGE_S:
                old.unlink(missing_ok=True)
        folder = self.path / uuid.uuid4().hex[:12]
        folder.mkdir()
        stem = Path(p.source).stem or "audio"
        json_path, csv_path = folder / f"{stem}.earmark.json", folder / f"{stem}.earmark.csv"
        json_path.write_text(export_json(p, pack=pack), encoding="utf-8")
        csv_path.write_text(export_csv(p), encoding="utf-8")
        return [str(json_path), str(csv_path)]


def make_handler(runner: Any, exports: _Exports, packs: Mapping[str, ClassifierPack]) -> Callable[..., Any]:
    """The Classify button: one prediction, rendered for the asker's language."""

    async def on_classify(
        audio_path: str | None,
        labels: str,
        threshold: float,
        template: str,
        choice: str | None,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        lang = pick_language(request.headers.get("accept-language") if request else None)
        if not audio_path:
            return _failed(t("no_audio", lang))
        try:
            label_set, pack = labels_and_pack(packs, choice, labels)
            templates = (template.strip(),) if template and template.strip() else None
            opts = runner.options(threshold=threshold, templates=templates)
            p = await runner.classify(
                Path(audio_path), label_set, opts, name=os.path.basename(audio_path), pack=pack
            )
        except ServerBusy as ex:
            return _failed(t("busy", lang, s=ex.retry_after_s))
        except EarmarkError as ex:
            return _failed(t("error", lang, reason=str(ex)))
        long_audio = len(p.windows) > 1
        timeline = gr.update(value=timeline_html(p, lang) if long_audio else "", visible=long_audio)
        name = choice if pack is not None else None
        return summary_html(p, lang, pack=name), bars_html(p, lang), timeline, exports.write(p, name)

    return on_classify


def _failed(message: str) -> tuple[Any, ...]:
    """The result area says what went wrong, and keeps saying it until the next action.

    (A raised ``gr.Error`` is a toast that fades after seconds and leaves empty red
    "Error" pills on every output.)
    """
    html = f'<div class="em-summary em-error" role="alert" data-error="true">{escape(message)}</div>'
    return html, "", gr.update(value="", visible=False), None


# a new input (an upload, a recording, an example) clears the previous answer, in the browser at once
_CLEAR_JS = "() => ['', '', '', null]"


def build_classify_tab(
    runner: Any,
    settings: ServerSettings,
    i18n: Any,
    examples: list[list[str]],
    packs: Mapping[str, ClassifierPack],
) -> None:
    """Components and events of the Classify tab (call inside ``gr.Tab``); ``packs`` adds the Classifier choice."""
    with gr.Row():
        with gr.Column(scale=1):
            # Gradio 6 shows an i18n label on Audio as "[object Object]": the caption is a Markdown instead
            gr.Markdown(i18n("audio"), elem_classes="em-caption")
            audio = gr.Audio(
                sources=["upload", "microphone"],
                type="filepath",
                label="audio",
                show_label=False,
                elem_id="em-audio",
            )
            pack, pack_note = pack_choice(packs, i18n, elem_id="em-pack")
            labels = gr.Textbox(
                label=i18n("labels"), lines=3, placeholder=t("labels_placeholder"), elem_id="em-labels"
            )
            with gr.Row(elem_id="em-presets"):
                preset_buttons = {
                    key: gr.Button(i18n(key), size="sm", elem_id=f"em-{key}") for key in PRESETS
                }
            threshold = gr.Slider(0, 1, value=0.7, step=0.01, label=i18n("threshold"), elem_id="em-threshold")
            template = gr.Textbox(value=DEFAULT_TEMPLATE, label=i18n("template"), elem_id="em-template")
            button = gr.Button(i18n("classify"), variant="primary", elem_id="em-classify")
            shown = gr.Examples(
                examples,
                inputs=[audio, labels],
                label=i18n("examples"),
                example_labels=["beep (5 s)", "hum → clicks → beep (30 s)"],
            )
        with gr.Column(scale=1):
            summary = gr.HTML(elem_id="em-summary")
            bars = gr.HTML(elem_id="em-bars")
            timeline = gr.HTML(visible=False, elem_id="em-timeline")
            downloads = gr.File(
                label=i18n("download"), file_count="multiple", interactive=False, elem_id="em-downloads"
            )
    for key, btn in preset_buttons.items():  # filled in by the browser: no server round trip
        btn.click(None, None, labels, js=f"() => {json.dumps(PRESETS[key])}")
    on_pack_change(pack, pack_note, labels, [*preset_buttons.values(), template], packs)
    if packs:  # the examples come with their own labels: picking one goes back to zero-shot
        shown.dataset.click(None, None, pack, js=f"() => {json.dumps(ZERO_SHOT)}")
    results = [summary, bars, timeline, downloads]
    audio.change(None, None, results, js=_CLEAR_JS, show_progress="hidden", api_visibility="private")
    handler = make_handler(runner, _Exports(), packs)
    button.click(
        handler,
        [audio, labels, threshold, template, pack],
        results,
        api_name="classify",
        concurrency_limit=settings.capacity,
    )
