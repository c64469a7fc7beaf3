"""``monitor.yaml``: sources, label sets, rules and sinks, checked on load.

Every mistake is reported with the file, line and key, e.g.
``home.yaml, line 31, rules[1].k: must be a whole number, not 'three'``. See
``docs/monitor.md`` for every key, and ``examples/monitor/`` for two complete
files (home security, industrial).
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..refine import RefineOptions
from ..types import DEFAULT_TEMPLATE, MIN_HOP_S

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack
from .clips import CLIP_FORMATS
from .mqtt import MqttOptions
from .rules import WEEKDAYS, Rule, Schedule, layered_thresholds, parse_time_range
from .sinks import RetryOptions, WebhookOptions
from .sources import PCM_FORMATS, ReconnectOptions, SourceSpec
from .yamldoc import Node, at_least, between, load_yaml, one_of, positive

__all__ = ["ClipOptions", "MonitorConfig", "OutboxOptions", "SinkSpec", "load_config"]


@dataclass(frozen=True, kw_only=True)
class ClipOptions:
    """Audio clips saved with events.

    Attributes:
        enabled: save clips at all.
        dir: folder for clips (default ``$EARMARK_HOME/clips``).
        format: ``wav``, ``flac``, ``ogg`` (Opus in Ogg), ``opus``, ``mp3`` or ``m4a``.
        pre_roll_s: audio kept from before the event's start.
        post_roll_s: audio kept after its end.
        max_s: longest clip (a long event keeps its first ``max_s``).
    """

    enabled: bool = True
    dir: Path | None = None
    format: str = "ogg"
    pre_roll_s: float = 5.0
    post_roll_s: float = 2.0
    max_s: float = 60.0


@dataclass(frozen=True, kw_only=True)
class OutboxOptions:
    """The persisted outbox between the event log and the sinks.

    Attributes:
        max_pending: messages kept per sink; past that the oldest are dropped and counted.
        retry: backoff between delivery attempts.
        flush_timeout_s: at shutdown, how long to keep trying to deliver what is queued.
    """

    max_pending: int = 10_000
    retry: RetryOptions = field(default_factory=RetryOptions)
    flush_timeout_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class SinkSpec:
    """One sink: ``type`` is stdout, jsonl, webhook or mqtt; ``options`` its settings."""

    name: str
    type: str
    options: Any = None


@dataclass(frozen=True, kw_only=True)
class MonitorConfig:
    """Everything ``earmark monitor`` runs (see the module docstring)."""

    sources: tuple[SourceSpec, ...]
    rules: tuple[Rule, ...]
    sinks: tuple[SinkSpec, ...] = (SinkSpec(name="stdout", type="stdout", options="text"),)
    model: str | None = None
    device: str | None = None
    threads: int | None = None
    database: Path | None = None
    window_s: float = 10.0
    hop_s: float = 2.0
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    timezone: str | None = None
    batch_max_windows: int = 16
    batch_max_wait_s: float = 0.05
    clips: ClipOptions = ClipOptions()
    outbox: OutboxOptions = OutboxOptions()
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    label_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    refine: RefineOptions | None = RefineOptions()  # None: keep the coarse boundaries

    def rules_for(self, source: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.applies_to(source))


Thresholds = tuple[tuple[str, float], ...]


def load_config(
    path: str | os.PathLike[str], text: str | None = None, *, thresholds: Thresholds | None = None
) -> MonitorConfig:
    """Read and check a monitor configuration file.

    Args:
        path: the YAML file (also names it in errors; relative paths inside are relative to its folder).
        text: its content, if already read.
        thresholds: per-label thresholds for every rule (``--thresholds FILE``), used
            instead of the file's top-level ``thresholds:`` file; a rule's own win.

    Raises:
        ConfigError: with the file, line and key of the first problem.
    """
    root = load_yaml(path, text).root()
    shared = _thresholds_file(root, "thresholds") if root.has("thresholds") else ()
    if thresholds is not None:
        shared = thresholds
    label_sets = _label_sets(root)
    sources = tuple(_source(n, i) for i, n in enumerate(root.items("sources")))
    if not sources:
        raise root.error("sources", "at least one source is needed")
    _unique(root, "sources", [s.name for s in sources])
    names = {s.name for s in sources}
    rules = tuple(_rule(n, i, label_sets, names, shared) for i, n in enumerate(root.items("rules")))
    if not rules:
        raise root.error("rules", "at least one rule is needed")
    _unique(root, "rules", [r.name for r in rules])
    sinks = tuple(_sink(n, i) for i, n in enumerate(root.items("sinks"))) or MonitorConfig.sinks
    _unique(root, "sinks", [s.name for s in sinks])
    window = root.get("window_s", float, _default(MonitorConfig, "window_s"), check=between(0.5, 10.0))
    hop = root.get("hop_s", float, _default(MonitorConfig, "hop_s"), check=at_least(MIN_HOP_S))
    if hop > window:
        raise root.error("hop_s", f"must not be longer than window_s ({window:g})")
    batch, metrics = _batch(root), _metrics(root)
    cfg = MonitorConfig(
        sources=sources,
        rules=rules,
        sinks=sinks,
        label_sets=label_sets,
        window_s=window,
        hop_s=hop,
        model=root.get("model", str),
        device=root.get("device", str),
        threads=root.get("threads", int, check=positive),
        database=root.path_value("database"),
        templates=_templates(root),
        timezone=_timezone(root),
        batch_max_windows=batch[0],
        batch_max_wait_s=batch[1],
        clips=_clips(root),
        outbox=_outbox(root),
        metrics_port=metrics[0],
        metrics_host=metrics[1],
        refine=_refine(root),
    )
    root.done()
    return cfg


def _unique(root: Node, key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise root.doc.error((key, i, "name"), f"name {name!r} is used twice")
        seen.add(name)


def _label_sets(root: Node) -> dict[str, tuple[str, ...]]:
    node = root.child("label_sets")
    if node is None:
        return {}
    out = {key: node.strings(key) for key in list(node.data)}
    for key, labels in out.items():
        if not labels:
            raise node.error(key, "is empty")
    return out


def _source(n: Node, i: int) -> SourceSpec:
    kinds = [k for k in ("file", "url", "stdin", "microphone") if n.has(k)]
    if len(kinds) != 1:
        raise n.error(None, "give exactly one of file:, url:, stdin: or microphone:")
    kind = kinds[0]
    target, extra = "", {}
    if kind == "file":
        target = str(n.path_value("file"))
        extra = {
            "realtime": n.get("realtime", bool, _default(SourceSpec, "realtime")),
            "loop": n.get("loop", bool, _default(SourceSpec, "loop")),
        }
    elif kind == "url":
        target = n.get(
            "url", str, check=lambda v: None if "://" in v else "must be a URL such as rtsp://host/path"
        )
        opts = n.get("ffmpeg_options", dict, {})
        extra = {"ffmpeg_options": tuple((str(k), str(v)) for k, v in opts.items())}
    else:  # stdin, microphone: true, or a mapping of settings (a microphone also takes a device name)
        value = n.raw(kind)
        sub = n.child(kind) if isinstance(value, dict) else None
        if sub is not None:
            extra = _pcm(sub, kind)
            target = str(sub.get("device", (str, int), "")) if kind == "microphone" else ""
            sub.done()
        elif kind == "microphone" and isinstance(value, (str, int)) and not isinstance(value, bool):
            target, extra = str(value), {"input_rate_hz": 48_000}
        elif value is True:
            extra = {"input_rate_hz": 48_000} if kind == "microphone" else {}
        else:
            raise n.error(kind, "must be true or a mapping of settings")
    name = n.get("name", str, None) or f"source-{i + 1}"
    gate = n.get(
        "gate_dbfs",
        (float, bool),
        _default(SourceSpec, "gate_dbfs"),
        check=lambda v: None if v is False or v <= 0 else "must be <= 0",
    )
    spec = SourceSpec(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        target=target,
        gate_dbfs=None if gate is False else gate,
        reconnect=_reconnect(n),
        **extra,
    )
    n.done()
    return spec


def _pcm(sub: Node, kind: str) -> dict[str, Any]:
    rate = sub.get(
        "sample_rate", int, 48_000 if kind == "microphone" else 16_000, check=between(8_000, 192_000)
    )
    channels = sub.get("channels", int, _default(SourceSpec, "channels"), check=between(1, 8))
    out: dict[str, Any] = {"input_rate_hz": rate, "channels": channels}
    if kind == "stdin":
        out["sample_format"] = sub.get(
            "format", str, _default(SourceSpec, "sample_format"), check=one_of(*PCM_FORMATS)
        )
    return out


def _reconnect(n: Node) -> ReconnectOptions:
    sub = n.child("reconnect")
    if sub is None:
        return ReconnectOptions()
    d = ReconnectOptions()
    values = {
        k: sub.get(k, float, getattr(d, k), check=positive)
        for k in ("initial_s", "max_s", "healthy_s", "watchdog_s", "open_timeout_s", "read_timeout_s")
    }
    sub.done()
    if values["max_s"] < values["initial_s"]:
        raise sub.error("max_s", "must be at least initial_s")
    return ReconnectOptions(**values)


def _rule(
    n: Node, i: int, label_sets: dict[str, tuple[str, ...]], sources: set[str], shared: Thresholds
) -> Rule:
    name = n.get("name", str, None) or f"rule-{i + 1}"
    labels = _labels(n, "labels", label_sets, required=True)
    pack = _pack(n)
    if pack is None:
        against = _labels(n, "against", label_sets, required=True)
    else:
        against = _pack_background(n, pack, labels)
    own = _rule_thresholds(n, labels)
    rule_sources = n.strings("sources")
    for j, s in enumerate(rule_sources):
        if s not in sources:
            raise n.doc.error(
                n.path + ("sources", j), f"no source is named {s!r}; sources: {', '.join(sorted(sources))}"
            )
    k = n.get("k", int, _default(Rule, "k"), check=at_least(1))
    nn = n.get("n", int, max(k, 1), check=at_least(1))
    if k > nn:
        raise n.error("k", f"cannot be more than n ({nn}): k of the last n windows must be hits")
    rule = Rule(
        name=name,
        labels=labels,
        against=against,
        threshold=n.get("threshold", float, _default(Rule, "threshold"), check=between(0, 1)),
        label_thresholds=layered_thresholds(labels, pack.label_thresholds if pack else (), shared, own),
        k=k,
        n=nn,
        cooldown_s=n.get("cooldown_s", float, _default(Rule, "cooldown_s"), check=at_least(0)),
        max_quiet_s=n.get("max_quiet_s", float, _default(Rule, "max_quiet_s"), check=at_least(0)),
        schedule=_schedule(n),
        sources=rule_sources,
        pack=pack,
    )
    n.done()
    return rule


def _pack(n: Node) -> ClassifierPack | None:
    """The rule's classifier pack (``pack: bearings.pack.json``), loaded and checked as a file."""
    path = n.path_value("pack")
    if path is None:
        return None
    from ..adapt.packs import load_pack

    try:
        return load_pack(path)
    except ConfigError as ex:
        raise n.error("pack", str(ex)) from None


def _pack_background(n: Node, pack: ClassifierPack, labels: tuple[str, ...]) -> tuple[str, ...]:
    """With a pack, alert labels are some of its labels and the rest (plus "none of these") are the background."""
    for label in labels:
        if label not in pack.labels:
            raise n.error("labels", f"{label!r} is not a label of this pack ({', '.join(pack.labels)})")
    if n.has("against"):
        raise n.error(
            "against", "a rule with a pack scores against the pack's other labels: leave against out"
        )
    return tuple(x for x in pack.labels if x not in labels)


def _rule_thresholds(n: Node, labels: tuple[str, ...]) -> Thresholds:
    """``thresholds:`` as a mapping {label: threshold}, or a thresholds file from ``earmark calibrate``."""
    if isinstance(n.raw("thresholds"), str):
        return _thresholds_file(n, "thresholds")
    thresholds = n.get("thresholds", dict, {})
    for label, value in thresholds.items():
        if label not in labels:
            raise n.doc.error(n.path + ("thresholds", label), f"{label!r} is not one of this rule's labels")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise n.doc.error(n.path + ("thresholds", label), f"must be a number from 0 to 1, not {value!r}")
    return tuple((str(a), float(b)) for a, b in thresholds.items())


def _thresholds_file(n: Node, key: str) -> Thresholds:
    from ..adapt.calibrate import load_thresholds

    path = n.path_value(key)
    try:
        return load_thresholds(path) if path is not None else ()
    except ConfigError as ex:
        raise n.error(key, str(ex)) from None


def _labels(n: Node, key: str, label_sets: dict[str, tuple[str, ...]], *, required: bool) -> tuple[str, ...]:
    """A label set name, a list (of labels or set names), or a comma-separated string of labels."""
    value = n.raw(key)
    if isinstance(value, str):
        if value in label_sets:
            return label_sets[value]
        if "," not in value and "_" in value and " " not in value.strip():
            known = ", ".join(sorted(label_sets)) or "none defined"
            raise n.error(
                key, f"no label set is named {value!r} (label sets: {known}); write labels as a list"
            )
    labels = [x.strip() for item in n.strings(key) for x in item.split(",")]
    if required and not any(labels):
        raise n.error(
            None if key not in n.data else key, f"{key} is required (a list of labels or a label set name)"
        )
    out: list[str] = []
    for label in labels:
        out.extend(label_sets.get(label, (label,)))  # a list may mix labels and label set names
    return tuple(dict.fromkeys(x for x in out if x))


def _schedule(n: Node) -> Schedule | None:
    sub = n.child("schedule")
    if sub is None:
        return None
    try:
        active = tuple(parse_time_range(x) for x in sub.strings("active"))
        quiet = tuple(parse_time_range(x) for x in sub.strings("quiet"))
    except ConfigError as ex:
        raise sub.error(None, str(ex)) from None
    days = tuple(d.lower()[:3] for d in sub.strings("days"))
    for j, d in enumerate(days):
        if d not in WEEKDAYS:
            raise sub.doc.error(sub.path + ("days", j), f"must be a weekday ({', '.join(WEEKDAYS)})")
    sub.done()
    return Schedule(active=active, quiet=quiet, days=days)


def _sink(n: Node, i: int) -> SinkSpec:
    kind = n.get("type", str, required=True, check=one_of("stdout", "jsonl", "webhook", "mqtt"))
    name = n.get("name", str, None) or (kind if i == 0 else f"{kind}-{i + 1}")
    options: Any
    if kind == "stdout":
        options = n.get("format", str, "text", check=one_of("text", "json"))
    elif kind == "jsonl":
        options = n.path_value("path")
        if options is None:
            raise n.error(None, "path is required (the JSON Lines file to append to)")
    elif kind == "webhook":
        headers = n.get("headers", dict, {})
        options = WebhookOptions(
            url=n.get(
                "url",
                str,
                required=True,
                check=lambda v: (
                    None if v.startswith(("http://", "https://")) else "must be an http:// or https:// URL"
                ),
            ),
            secret=n.get("secret", str),
            timeout_s=n.get("timeout_s", float, _default(WebhookOptions, "timeout_s"), check=positive),
            headers=tuple((str(k), str(v)) for k, v in headers.items()),
            send_clips=n.get("send_clips", bool, _default(WebhookOptions, "send_clips")),
        )
    else:
        d = MqttOptions()
        options = MqttOptions(
            host=n.get("host", str, d.host),
            port=n.get("port", int, d.port, check=between(1, 65535)),
            username=n.get("username", str),
            password=n.get("password", (str, int)),
            tls=n.get("tls", bool, False),
            client_id=n.get("client_id", str, ""),
            topic_prefix=n.get("topic_prefix", str, d.topic_prefix),
            qos=n.get("qos", int, 1, check=between(0, 1)),
            keepalive_s=n.get("keepalive_s", int, 30, check=positive),
            homeassistant=n.get("homeassistant", bool, False),
            discovery_prefix=n.get("discovery_prefix", str, d.discovery_prefix),
        )
    n.done()
    return SinkSpec(name=name, type=kind, options=options)


def _default(cls: type, name: str) -> Any:
    """A dataclass field's own default: the one place each default lives (the YAML reader asks it)."""
    for f in fields(cls):
        if f.name == name:
            if f.default is MISSING:
                raise AssertionError(f"{cls.__name__}.{name} has no default")
            return f.default
    raise AssertionError(f"{cls.__name__} has no field {name}")


def _templates(root: Node) -> tuple[str, ...]:
    from ..labels import check_templates

    templates = root.strings("templates", (DEFAULT_TEMPLATE,))
    try:
        return check_templates(templates)
    except ConfigError as ex:
        raise root.error("templates", str(ex)) from None


def _timezone(root: Node) -> str | None:
    tz: str | None = root.get("timezone", str)
    if tz is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise root.error("timezone", f"unknown time zone {tz!r} (e.g. Europe/Berlin)") from None
    return tz


def _batch(root: Node) -> tuple[int, float]:
    sub = root.child("batch")
    windows, wait_s = (
        _default(MonitorConfig, "batch_max_windows"),
        _default(MonitorConfig, "batch_max_wait_s"),
    )
    if sub is None:
        return windows, wait_s
    out = (
        sub.get("max_windows", int, windows, check=between(1, 1024)),
        sub.get("max_wait_ms", float, wait_s * 1000) / 1000,
    )
    sub.done()
    return out


def _clips(root: Node) -> ClipOptions:
    sub = root.child("clips")
    if sub is None:
        return ClipOptions()
    d = ClipOptions()
    out = ClipOptions(
        enabled=sub.get("enabled", bool, d.enabled),
        dir=sub.path_value("dir"),
        format=sub.get("format", str, d.format, check=one_of(*CLIP_FORMATS)),
        pre_roll_s=sub.get("pre_roll_s", float, d.pre_roll_s, check=between(0, 60)),
        post_roll_s=sub.get("post_roll_s", float, d.post_roll_s, check=between(0, 60)),
        max_s=sub.get("max_s", float, d.max_s, check=between(1, 3600)),
    )
    sub.done()
    return out


def _outbox(root: Node) -> OutboxOptions:
    sub = root.child("outbox")
    if sub is None:
        return OutboxOptions()
    d = OutboxOptions()
    out = OutboxOptions(
        max_pending=sub.get("max_pending", int, d.max_pending, check=at_least(1)),
        retry=RetryOptions(
            initial_s=sub.get("retry_initial_s", float, d.retry.initial_s, check=positive),
            max_s=sub.get("retry_max_s", float, d.retry.max_s, check=positive),
        ),
        flush_timeout_s=sub.get("flush_timeout_s", float, d.flush_timeout_s, check=at_least(0)),
    )
    sub.done()
    return out


def _refine(root: Node) -> RefineOptions | None:
    """``refine: false``, or a mapping of :class:`~earmark.refine.RefineOptions` (seconds)."""
    if not root.has("refine"):
        return RefineOptions()
    if isinstance(root.raw("refine"), bool):
        return RefineOptions() if root.get("refine", bool) else None
    sub = root.child("refine")
    assert sub is not None
    d = RefineOptions()
    values = {
        k: sub.get(k, float, getattr(d, k), check=between(0, 60)) for k in RefineOptions.__dataclass_fields__
    }
    sub.done()
    try:
        return RefineOptions(**values)
    except ValueError as ex:
        raise root.error("refine", str(ex)) from None


def _metrics(root: Node) -> tuple[int | None, str]:
    sub = root.child("metrics")
    host = _default(MonitorConfig, "metrics_host")
    if sub is None:
        return None, host
    out = sub.get("port", int, None, check=between(1, 65535)), sub.get("host", str, host)
    sub.done()
    return out
