"""The page's "Classifier" choice: zero-shot from typed labels, or one of the served classifier packs.

Shown only when the server serves packs. Choosing a pack fills the labels box
with the pack's labels and locks it (and whatever else only zero-shot uses),
so the page shows what the pack scores; handlers then classify with the pack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import gradio as gr

from .i18n import pick_language, t
from .served_packs import pick_pack

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack

__all__ = ["ZERO_SHOT", "labels_and_pack", "on_pack_change", "pack_choice"]

# the dropdown value of "zero-shot": no pack name is empty
ZERO_SHOT = ""


def pack_choice(
    packs: Mapping[str, ClassifierPack], i18n: Any, *, elem_id: str
) -> tuple[gr.Dropdown, gr.HTML]:
    """The Classifier dropdown and the note under it (both hidden when no packs are served)."""
    choices = [(i18n("pack_zero_shot"), ZERO_SHOT), *((name, name) for name in sorted(packs))]
    dropdown = gr.Dropdown(
        choices, value=ZERO_SHOT, label=i18n("pack"), visible=bool(packs), interactive=True, elem_id=elem_id
    )
    note = gr.HTML(visible=False, elem_id=f"{elem_id}-note")
    return dropdown, note


def on_pack_change(
    dropdown: gr.Dropdown,
    note: gr.HTML,
    labels: gr.Textbox,
    zero_shot_only: Sequence[Any],
    packs: Mapping[str, ClassifierPack],
) -> None:
    """Wire the dropdown: a pack fills and locks ``labels`` and disables ``zero_shot_only``; zero-shot frees them."""

    def change(choice: str | None, request: gr.Request) -> tuple[Any, ...]:
        pack = packs.get(choice or ZERO_SHOT)
        free = [gr.update(interactive=pack is None) for _ in zero_shot_only]
        if pack is None:
            return (gr.update(interactive=True), gr.update(value="", visible=False), *free)
        lang = pick_language(request.headers.get("accept-language") if request else None)
        return (
            gr.update(value=", ".join(pack.labels), interactive=False),
            gr.update(value=_note(str(choice), pack, lang), visible=True),
            *free,
        )

    dropdown.change(
        change, [dropdown], [labels, note, *zero_shot_only], show_progress="hidden", api_visibility="private"
    )


def _note(name: str, pack: ClassifierPack, lang: str) -> str:
    training = pack.training
    examples = sum(int(n) for n in (training.get("examples") or {}).values())
    acc = training.get("cv_accuracy")
    text = t(
        "pack_note", lang, name=name, n=examples or "?", acc=f"{acc:.0%}" if isinstance(acc, float) else "?"
    )
    return f'<div class="em-pack-note" data-pack="{escape(name)}">{escape(text)}</div>'


def labels_and_pack(
    packs: Mapping[str, ClassifierPack], choice: str | None, labels: str
) -> tuple[str | None, ClassifierPack | None]:
    """What a handler classifies with: typed labels (zero-shot), or ``None`` and the chosen pack.

    Raises:
        UnknownPack: the choice names no served pack.
    """
    pack = pick_pack(packs, choice)
    return (None, pack) if pack is not None else (labels, None)
