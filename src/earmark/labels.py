"""Candidate labels and prompt templates: parsing and sanity checks (pure)."""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError, LabelError

__all__ = ["MAX_LABELS", "MAX_LABEL_CHARS", "check_templates", "parse_labels", "prompts"]

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


def _read_label_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as ex:
        raise LabelError(f"cannot read label file {path}: {ex.strerror or ex}") from None
    except UnicodeDecodeError:
        raise LabelError(f"label file {path} is not UTF-8 text") from None
    return [line.split("#", 1)[0] for line in text.splitlines()]


def check_templates(templates: Iterable[str]) -> tuple[str, ...]:
    """Validate prompt templates: each must contain ``{label}`` exactly as a field."""
    out = tuple(templates)
    if not out:
        raise ConfigError("at least one prompt template is needed, e.g. 'This is a sound of {label}.'")
    for t in out:
        if "{label}" not in t:
            raise ConfigError(f"prompt template {t!r} has no {{label}} placeholder")
        try:
            t.format(label="x")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"prompt template {t!r} may only use the {{label}} placeholder") from None
    return out


def prompts(template: str, labels: Iterable[str]) -> list[str]:
    return [template.format(label=label) for label in labels]
