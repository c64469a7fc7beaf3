"""YAML with line numbers: every value knows where it came from, so errors can say so.

``load_yaml`` parses with PyYAML's safe constructor, remembering the line of
every key and list item. :class:`Node` wraps a mapping at a path and hands out
typed, checked values; any problem becomes a :class:`~earmark.errors.ConfigError`
like ``monitor.yaml, line 12, rules[0].threshold: must be a number from 0 to 1``.
Unknown keys are errors too (a typo is never silently ignored).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, MissingExtraError

__all__ = ["Doc", "Node", "load_yaml"]

T = TypeVar("T")
Path_ = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Doc:
    """A parsed YAML file: its data and the line of every path."""

    def __init__(self, name: str, data: Any, lines: dict[Path_, int], folder: Path) -> None:
        self.name, self.data, self.lines, self.folder = name, data, lines, folder

    def error(self, path: Path_, message: str) -> ConfigError:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        where = f", line {self.lines[probe]}" if probe in self.lines else ""
        return ConfigError(f"{self.name}{where}, {format_path(path) or 'top level'}: {message}")

    def root(self) -> Node:
        if not isinstance(self.data, dict):
            raise self.error((), "the file must be a mapping of keys (sources:, rules:, sinks: ...)")
        return Node(self, (), self.data)


def format_path(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def load_yaml(path: str | os.PathLike[str], text: str | None = None) -> Doc:
    """Parse a YAML file into a :class:`Doc`.

    ``${NAME}`` in a string is replaced by the environment variable (an error if
    unset), ``${NAME:-default}`` falls back to ``default``: secrets stay out of the file.
    """
    try:
        import yaml
    except ImportError:
        raise MissingExtraError("monitor configuration files", "monitor") from None
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as ex:
            raise ConfigError(f"cannot read {path}: {ex.strerror or ex}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as ex:
        mark = getattr(ex, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(ex, 'problem', None) or ex})") from None
    lines: dict[Path_, int] = {}
    doc = Doc(str(path), None, lines, path.resolve().parent)
    doc.data = _build(node, (), lines, doc, yaml) if node is not None else {}
    return doc


def _build(node: Any, path: Path_, lines: dict[Path_, int], doc: Doc, yaml: Any) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise doc.error(path, "keys must be plain words")
            key = str(k.value)
            lines[path + (key,)] = k.start_mark.line + 1
            if key in out:
                raise doc.error(path + (key,), "is given twice")
            out[key] = _build(v, path + (key,), lines, doc, yaml)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, path + (i,), lines, doc, yaml) for i, v in enumerate(node.value)]
    value = yaml.constructor.SafeConstructor().construct_object(node)
    if isinstance(value, str):
        value = _ENV.sub(lambda m: _env(m.group(1), m.group(2), path, doc), value)
    return value


def _env(name: str, default: str | None, path: Path_, doc: Doc) -> str:
    if name in os.environ:
        return os.environ[name]
    if default is not None:
        return default
    raise doc.error(path, f"environment variable {name} is not set (or give a default: ${{{name}:-value}})")


class Node:
    """A mapping in the document; read each key once with the typed getters, then :meth:`done`."""

    def __init__(self, doc: Doc, path: Path_, data: dict[str, Any]) -> None:
        self.doc, self.path, self.data = doc, path, data
        self._seen: set[str] = set()

    def error(self, key: str | None, message: str) -> ConfigError:
        return self.doc.error(self.path + ((key,) if key is not None else ()), message)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        return self.data.get(key, default)

    def get(
        self,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: Any = None,
        *,
        check: Callable[[Any], str | None] | None = None,
        required: bool = False,
    ) -> Any:
        """The value of ``key`` as ``kind`` (ints accepted for floats), or ``default``; ``check`` returns a problem."""
        self._seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.error(None, f"{key} is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise self.error(key, f"must be {names}, not {value!r}")
        problem = check(value) if check else None
        if problem:
            raise self.error(key, problem)
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list of strings (a single string is a list of one)."""
        value = self.get(key, (list, str), None)
        if value is None:
            return default
        items = [value] if isinstance(value, str) else value
        for i, item in enumerate(items):
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise self.doc.error(self.path + (key, i), f"must be text, not {item!r}")
        return tuple(str(x).strip() for x in items)

    def child(self, key: str, *, required: bool = False) -> Node | None:
        value = self.get(key, dict, None, required=required)
        return None if value is None else Node(self.doc, self.path + (key,), value)

    def items(self, key: str) -> list[Node]:
        """A list of mappings under ``key``."""
        value = self.get(key, list, [])
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.doc.error(self.path + (key, i), "must be a mapping of keys")
            out.append(Node(self.doc, self.path + (key, i), item))
        return out

    def path_value(self, key: str, default: str | None = None) -> Path | None:
        """A file path; relative ones are relative to the config file's folder."""
        value = self.get(key, str, default)
        if value is None:
            return None
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.doc.folder / p

    def done(self, allowed: tuple[str, ...] = ()) -> None:
        """Raise on any key not read (a typo or an option that does not exist)."""
        for key in self.data:
            if key not in self._seen and key not in allowed:
                known = sorted(self._seen | set(allowed))
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(known)}"
                raise self.error(key, f"unknown key {key!r}{hint}")


_TYPE_NAMES = {
    str: "text",
    float: "a number",
    int: "a whole number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


def between(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be from {lo:g} to {hi:g}, not {v:g}"


def positive(v: Any) -> str | None:
    return None if v > 0 else f"must be more than 0, not {v:g}"


def at_least(lo: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= lo else f"must be at least {lo:g}, not {v:g}"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, not {v!r}"
