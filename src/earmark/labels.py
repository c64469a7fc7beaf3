"""Candidate labels and prompt templates: parsing and sanity checks (pure)."""

from __future__ import annotations

import logging
import os
import re
import string
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError, LabelError

__all__ = [
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MAX_TEMPLATES",
    "MAX_TEMPLATE_CHARS",
    "check_pack_labels",
    "check_template",
    "check_templates",
    "parse_labels",
    "prompts",
]

log = logging.getLogger("earmark")

MAX_LABELS = 1000
MAX_LABEL_CHARS = 200


def parse_labels(*sources: str | Iterable[str] | os.PathLike[str] | None) -> tuple[str, ...]:
    """Labels from lists, comma/newline strings and label files, cleaned and checked.

    Each argument may be a list of labels, a string of labels separated by commas
    or new lines, or a path to a text file (a ``Path``) with one label per line
    (``#`` starts a comment). A list element is one label as given: it is never
    split, so ``["knock, knock", "hum"]`` is two labels. Whitespace is trimmed and
    labels are put in Unicode NFC form (a composed and a decomposed "café" are one
    label); empty entries and repeats (case-insensitive) are dropped with a warning.

    Raises:
        LabelError: no labels, fewer than 2, more than ``MAX_LABELS``, or a label
            longer than ``MAX_LABEL_CHARS`` characters.
    """
    raw: list[str] = []
    for src in sources:
        if src is None:
            continue
        if isinstance(src, os.PathLike):
            raw.extend(_read_label_file(Path(src)))
        elif isinstance(src, str):
            raw.extend(re.split(r"[,\n\r]", src))
        else:
            raw.extend(str(item) for item in src)
    if len(raw) > MAX_LABELS * 4:  # refuse early: do not even clean a flood
        raise LabelError(f"{len(raw)} labels given; at most {MAX_LABELS} are supported")
    seen: dict[str, str] = {}
    dropped_empty = 0
    dropped_dupes: list[str] = []
    for item in raw:
        label = unicodedata.normalize("NFC", " ".join(item.split()))
        if not label:
            dropped_empty += 1
            continue
        key = label.casefold()
        if key in seen:
            dropped_dupes.append(label)
            continue
        if len(label) > MAX_LABEL_CHARS:
            raise LabelError(
                f"label {label[:40]!r}... is {len(label)} characters; at most {MAX_LABEL_CHARS} characters are supported"
            )
        seen[key] = label
    if dropped_dupes:
        log.warning("duplicate labels ignored: %s", ", ".join(dropped_dupes))
    if dropped_empty and raw:
        log.warning("%d empty label(s) ignored", dropped_empty)
    labels = tuple(seen.values())
    if len(labels) > MAX_LABELS:
        raise LabelError(f"{len(labels)} labels given; at most {MAX_LABELS} are supported")
    if not labels:
        raise LabelError("no labels given: name at least 2 candidate labels, e.g. 'dog barking, siren'")
    if len(labels) < 2:
        raise LabelError(
            f"need at least 2 labels to choose between (got only {labels[0]!r}); "
            "add an alternative such as 'background'"
        )
    return labels


def check_pack_labels(
    labels: str | Iterable[str] | None, pack_labels: Iterable[str], *, verb: str = "scores"
) -> None:
    """With a classifier pack, labels must be left out or be exactly the pack's (in any order).

    The one check ``classify``, ``serve`` and ``tag`` make before any audio is read.

    Raises:
        LabelError: other labels than the pack's.
    """
    given = labels if labels is None or isinstance(labels, str) else tuple(labels)
    if not given or (isinstance(given, str) and not given.strip()):
        return
    own = tuple(pack_labels)
    if set(parse_labels(given)) != set(own):
        raise LabelError(
            f"a classifier pack {verb} its own labels ({', '.join(own)}); leave the labels out or give exactly those"
        )


def _read_label_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as ex:
        raise LabelError(f"cannot read label file {path}: {ex.strerror or ex}") from None
    except UnicodeDecodeError:
        raise LabelError(f"label file {path} is not UTF-8 text") from None
    return [line.split("#", 1)[0] for line in text.splitlines()]


MAX_TEMPLATE_CHARS = 200
"""Longest prompt template accepted, in characters."""

MAX_TEMPLATES = 16
"""Most prompt templates one request may average over."""


def check_template(template: str) -> str:
    """Validate one prompt template; returns it.

    A template is text with ``{label}`` where the label goes: no other field, no
    format spec (``{label:>99}``) and no conversion (``{label!r}``), so filling it
    in costs no more than its own length plus the label's. Literal braces are
    written ``{{`` and ``}}``.

    Raises:
        ConfigError: not text, longer than ``MAX_TEMPLATE_CHARS``, no ``{label}``,
            another field, a format spec or conversion, or unbalanced braces.
    """
    if not isinstance(template, str):
        raise ConfigError("a prompt template must be text, e.g. 'This is a sound of {label}.'")
    shown = template if len(template) <= 60 else template[:57] + "..."
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ConfigError(
            f"prompt template {shown!r} is {len(template)} characters; at most {MAX_TEMPLATE_CHARS} are supported"
        )
    try:
        fields = [
            (name, spec, conv)
            for _, name, spec, conv in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError:
        raise ConfigError(
            f"prompt template {shown!r} has an unbalanced brace (write {{{{ or }}}} for a brace)"
        ) from None
    if not fields:
        raise ConfigError(f"prompt template {shown!r} has no {{label}} placeholder")
    for name, spec, conv in fields:
        if name != "label" or spec or conv:
            raise ConfigError(
                f"prompt template {shown!r} may only use the {{label}} placeholder, exactly as written"
            )
    return template


def check_templates(templates: Iterable[str]) -> tuple[str, ...]:
    """Validate prompt templates (see :func:`check_template`): 1 to ``MAX_TEMPLATES`` of them."""
    if isinstance(templates, str):
        templates = (templates,)
    out = tuple(templates)
    if not out:
        raise ConfigError("at least one prompt template is needed, e.g. 'This is a sound of {label}.'")
    if len(out) > MAX_TEMPLATES:
        raise ConfigError(f"{len(out)} prompt templates given; at most {MAX_TEMPLATES} are supported")
    for t in out:
        check_template(t)
    return out


def prompts(template: str, labels: Iterable[str]) -> list[str]:
    return [template.format(label=label) for label in labels]
