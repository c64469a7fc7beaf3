"""Labelled audio for evaluation and fitting: folders, manifests and ESC-50.

Three layouts load into one :class:`Dataset` (items with a path, a label and
an optional fold):

- a folder with one sub-folder per class (``dog/``, ``siren/``...), audio
  found recursively inside each;
- a manifest, CSV with a header (``path,label[,fold]``) or JSON Lines
  (``{"path": ..., "label": ..., "fold": ...}``), paths relative to the
  manifest's folder;
- the ESC-50 layout (``meta/esc50.csv`` + ``audio/``), with its classes phrased
  as the LAION-CLAP zero-shot evaluation phrases them (``sea_waves`` -> ``sea
  waves``) and in its target order, so published numbers can be reproduced.

A class name becomes the label text the model reads: underscores become
spaces, or a mapping file says what to use (``bearing_dry`` -> ``a dry
squealing bearing``).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..audio.sniff import audio_files, is_candidate
from ..errors import ConfigError

__all__ = [
    "LAION_TEMPLATE",
    "Dataset",
    "Item",
    "esc50",
    "from_folder",
    "from_manifest",
    "load",
    "load_label_map",
]

log = logging.getLogger("earmark")


# The prompt of LAION-CLAP's ESC-50 zero-shot script: "This is a sound of " + class (no full stop).
LAION_TEMPLATE = "This is a sound of {label}"


@dataclass(frozen=True, kw_only=True)
class Item:
    """One labelled file.

    Attributes:
        path: the audio file.
        label: its label text (after any mapping).
        fold: its fold, when the layout has folds (as text: ``"1"``).
    """

    path: str
    label: str
    fold: str | None = None


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """Labelled files and their label set.

    Attributes:
        name: where it came from (folder or manifest path).
        items: the files, in a stable order.
        labels: the label texts, in class order (sorted, or ESC-50's target order).
        template: the prompt this layout is usually evaluated with (``None``: earmark's default).
    """

    name: str
    items: tuple[Item, ...]
    labels: tuple[str, ...]
    template: str | None = None

    def targets(self) -> list[int]:
        """Class index of each item."""
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[item.label] for item in self.items]

    def select_folds(self, folds: Iterable[str | int]) -> Dataset:
        """Only the items in these folds (labels unchanged)."""
        wanted = {str(f) for f in folds}
        have = {item.fold for item in self.items}
        if None in have:
            raise ConfigError(
                f"{self.name} has no folds to select from (add a 'fold' column to the manifest)"
            )
        missing = wanted - have
        if missing:
            raise ConfigError(
                f"{self.name}: no fold {', '.join(sorted(missing))}; folds are: "
                + ", ".join(sorted(h for h in have if h is not None))
            )
        return replace(self, items=tuple(i for i in self.items if i.fold in wanted))

    def counts(self) -> dict[str, int]:
        """Items per label, in label order."""
        out = {label: 0 for label in self.labels}
        for item in self.items:
            out[item.label] += 1
        return out


def default_text(name: str) -> str:
    """A class name as label text: ``glass_breaking`` -> ``glass breaking``."""
    return " ".join(name.replace("_", " ").split())


def load_label_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """A mapping file: class name -> label text.

    JSON (``{"bearing_dry": "a dry squealing bearing"}``) or CSV/TSV with two
    columns (name, label text; a header row ``name,label`` is allowed).

    Raises:
        ConfigError: unreadable file or malformed content.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as ex:
        raise ConfigError(f"cannot read label map {p}: {getattr(ex, 'strerror', None) or ex}") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as ex:
            raise ConfigError(f"label map {p} is not valid JSON: {ex}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(f"label map {p} must be a JSON object of class name -> label text")
        return {str(k): v for k, v in data.items()}
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    out: dict[str, str] = {}
    for n, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2:
            raise ConfigError(
                f"label map {p} line {n}: expected 2 columns (name, label text), got {len(row)}"
            )
        if n == 1 and [c.strip().lower() for c in row] == ["name", "label"]:
            continue
        out[row[0].strip()] = row[1].strip()
    return out


def _labels_for(names: Sequence[str], mapping: Mapping[str, str] | None, source: str) -> dict[str, str]:
    """Class name -> label text, checked: unique, usable as one label each."""
    mapping = mapping or {}
    unused = sorted(set(mapping) - set(names))
    if unused:
        log.warning("label map entries for classes not in %s ignored: %s", source, ", ".join(unused))
    texts: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        text = " ".join(mapping.get(name, default_text(name)).split())
        if not text or any(ch in text for ch in ",\n\r"):
            raise ConfigError(f"class {name!r}: label text {text!r} must be non-empty and contain no comma")
        key = text.casefold()
        if key in seen:
            raise ConfigError(
                f"classes {seen[key]!r} and {name!r} both read as label {text!r}; "
                "give them different texts in the label map"
            )
        seen[key] = name
        texts[name] = text
    return texts


def from_folder(root: str | os.PathLike[str], *, label_map: Mapping[str, str] | None = None) -> Dataset:
    """One sub-folder per class; audio files found recursively inside each.

    Raises:
        ConfigError: no class folders, or a class folder without audio.
    """
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"{base} is not a folder")
    names = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(names) < 2:
        raise ConfigError(f"{base} needs one sub-folder per class (at least 2); found {len(names)}")
    loose = [f for f in os.listdir(base) if (base / f).is_file() and is_candidate(base / f)]
    if loose:
        log.warning(
            "%d audio file(s) directly in %s belong to no class folder and are ignored", len(loose), base
        )
    texts = _labels_for(names, label_map, str(base))
    items: list[Item] = []
    for name in names:
        files = audio_files(base / name)
        if not files:
            raise ConfigError(f"class folder {base / name} has no audio files")
        items.extend(Item(path=f, label=texts[name]) for f in files)
    return Dataset(name=str(base), items=tuple(items), labels=tuple(texts[n] for n in names))


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets often write a byte-order mark
    except (OSError, UnicodeDecodeError) as ex:
        raise ConfigError(f"cannot read manifest {path}: {getattr(ex, 'strerror', None) or ex}") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as ex:
                raise ConfigError(f"{path} line {n} is not JSON: {ex}") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{path} line {n}: expected an object with path and label")
            rows.append({k: "" if v is None else str(v) for k, v in row.items()})
        return rows
    reader = csv.DictReader(text.splitlines())
    return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def from_manifest(path: str | os.PathLike[str], *, label_map: Mapping[str, str] | None = None) -> Dataset:
    """A CSV (header ``path,label[,fold]``) or JSON Lines manifest.

    Relative paths are relative to the manifest's folder.

    Raises:
        ConfigError: missing columns, empty fields, or files that do not exist.
    """
    p = Path(path)
    rows = _manifest_rows(p)
    if not rows:
        raise ConfigError(f"manifest {p} lists no files")
    for n, row in enumerate(rows, 1):
        if not row.get("path") or not row.get("label"):
            raise ConfigError(f"manifest {p} entry {n}: needs non-empty 'path' and 'label'")
    names = sorted({row["label"] for row in rows})
    if len(names) < 2:
        raise ConfigError(f"manifest {p} has only one label ({names[0]!r}); need at least 2")
    texts = _labels_for(names, label_map, str(p))
    items = []
    for row in rows:
        f = Path(row["path"]) if os.path.isabs(row["path"]) else p.parent / row["path"]
        items.append(Item(path=str(f), label=texts[row["label"]], fold=row.get("fold") or None))
    _check_exists(items, str(p))
    if len({i.fold is None for i in items}) > 1:
        raise ConfigError(f"manifest {p}: some entries have a fold and some do not")
    return Dataset(name=str(p), items=tuple(items), labels=tuple(texts[n] for n in names))


def _check_exists(items: Sequence[Item], source: str) -> None:
    missing = [i.path for i in items if not os.path.isfile(i.path)]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(
            f"{source}: {len(missing)} listed file(s) do not exist: {', '.join(missing[:3])}{more}"
        )


def esc50(
    root: str | os.PathLike[str], *, esc10: bool = False, label_map: Mapping[str, str] | None = None
) -> Dataset:
    """The ESC-50 layout: ``meta/esc50.csv`` (filename, fold, target, category, esc10...) and ``audio/``.

    Classes are in target order and phrased as in LAION-CLAP's zero-shot
    evaluation (underscores as spaces); the dataset's template is LAION's
    ``This is a sound of {label}``. Select folds with :meth:`Dataset.select_folds`.

    Args:
        root: the folder holding ``meta/`` and ``audio/``.
        esc10: only the ESC-10 subset.
        label_map: other label texts per category (``sea_waves``...); the published
            figures are without one.

    Raises:
        ConfigError: missing or malformed metadata, or listed files missing.
    """
    base = Path(root)
    meta = base / "meta" / "esc50.csv"
    try:
        rows = list(csv.DictReader(meta.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as ex:
        raise ConfigError(
            f"{base} is not an ESC-50 folder: cannot read {meta}: {getattr(ex, 'strerror', None) or ex}"
        ) from None
    need = {"filename", "fold", "target", "category"}
    if not rows or not need <= set(rows[0]):
        raise ConfigError(f"{meta} needs the columns {', '.join(sorted(need))}")
    if esc10:
        rows = [r for r in rows if r.get("esc10", "").strip().lower() == "true"]
    try:
        by_target = {int(r["target"]): r["category"] for r in rows}
    except ValueError:
        raise ConfigError(f"{meta}: 'target' must be a whole number") from None
    names = [by_target[t] for t in sorted(by_target)]
    texts = _labels_for(names, label_map, str(meta))
    items = tuple(
        Item(path=str(base / "audio" / r["filename"]), label=texts[r["category"]], fold=r["fold"].strip())
        for r in sorted(rows, key=lambda r: r["filename"])
    )
    _check_exists(items, str(meta))
    return Dataset(
        name=str(base), items=items, labels=tuple(texts[n] for n in names), template=LAION_TEMPLATE
    )


def load(
    source: str | os.PathLike[str],
    *,
    label_map: str | os.PathLike[str] | None = None,
    folds: Sequence[str | int] = (),
) -> Dataset:
    """Load a folder, a manifest or an ESC-50 tree (detected by ``meta/esc50.csv``).

    Args:
        source: folder or manifest file.
        label_map: optional mapping file (class name -> label text).
        folds: keep only these folds.
    """
    p = Path(source)
    mapping = load_label_map(label_map) if label_map else None
    if p.is_dir() and (p / "meta" / "esc50.csv").is_file():
        ds = esc50(p, label_map=mapping)
    elif p.is_dir():
        ds = from_folder(p, label_map=mapping)
    elif p.is_file():
        ds = from_manifest(p, label_map=mapping)
    else:
        raise ConfigError(f"{p} does not exist")
    return ds.select_folds(folds) if folds else ds
