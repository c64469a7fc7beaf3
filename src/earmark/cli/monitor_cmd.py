"""earmark monitor (live streams -> events) and earmark events (the event log)."""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from .common import collect_labels, label_options, model_options, warn_unmatched_thresholds


@click.command("monitor")
@click.argument("source", required=False)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Monitor configuration (YAML): sources, label sets, rules, sinks.",
)
@label_options
@click.option(
    "-a",
    "--alert",
    "alerts",
    multiple=True,
    help="Quick start: label(s) to alert on; the other labels are the background.",
)
@click.option("-t", "--threshold", type=click.FloatRange(0, 1), default=0.75, show_default=True)
@click.option(
    "--thresholds",
    "thresholds_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Per-label thresholds file from 'earmark calibrate', for every rule (a rule's own win).",
)
@click.option(
    "--pack",
    "pack_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Quick start: a classifier pack from 'earmark fit' scores its labels (no -l needed).",
)
@click.option(
    "-k", "k", type=click.IntRange(1), default=3, show_default=True, help="Hits needed among the last N."
)
@click.option("-n", "n", type=click.IntRange(1), default=3, show_default=True, help="Windows looked at.")
@click.option("--cooldown-s", type=float, default=60.0, show_default=True)
@click.option("--max-quiet-s", type=float, default=10.0, show_default=True)
@click.option("--window-s", type=float, default=10.0, show_default=True)
@click.option("--hop-s", type=float, default=2.0, show_default=True)
@click.option("--fast", is_flag=True, help="Read a file as fast as possible (default: at real-time speed).")
@click.option(
    "--rate", type=int, default=16000, show_default=True, help="Sample rate of raw PCM on stdin (-)."
)
@click.option(
    "--channels", type=click.IntRange(1, 8), default=1, show_default=True, help="Channels of raw PCM."
)
@click.option(
    "--pcm-format", type=click.Choice(["s16le", "s32le", "f32le"]), default="s16le", show_default=True
)
@click.option(
    "--gate-dbfs", type=float, default=-70.0, show_default=True, help="Skip windows quieter than this."
)
@click.option("--webhook", default=None, help="POST events to this URL.")
@click.option(
    "--webhook-secret", envvar="EARMARK_WEBHOOK_SECRET", default=None, help="HMAC key for the webhook."
)
@click.option("--mqtt", default=None, metavar="HOST[:PORT]", help="Publish events to this MQTT broker.")
@click.option(
    "--jsonl", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Append events here."
)
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines instead of text.")
@click.option("--clips-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option(
    "--clip-format",
    type=click.Choice(["wav", "flac", "ogg", "opus", "mp3", "m4a"]),
    default="ogg",
    show_default=True,
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EARMARK_DB",
    default=None,
    help="Event database (default: $EARMARK_HOME/earmark.db).",
)
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@click.option("--check", is_flag=True, help="Check the configuration and exit.")
@model_options
def monitor_cmd(
    source: str | None,
    config_path: Path | None,
    check: bool,
    db: Path | None,
    model: str | None,
    device: str | None,
    threads: int | None,
    thresholds_path: Path | None,
    **quick: Any,
) -> None:
    """Listen to live audio and raise events when rules match.

    With --config: everything from the YAML file (see docs/monitor.md). Quick
    start: SOURCE is a file, a URL (rtsp://, http://...), - for raw PCM on stdin,
    or mic[:DEVICE]; e.g.

        earmark monitor rtsp://cam/stream -l "glass breaking, speech, music, silence" --alert "glass breaking"

    Runs until the sources end, or SIGTERM / Ctrl-C: open events are closed and
    queued messages delivered before it exits.
    """
    import dataclasses

    from ..adapt.calibrate import load_thresholds
    from ..monitor.config import load_config

    thresholds = load_thresholds(thresholds_path) if thresholds_path else None
    if config_path is not None:
        if source is not None:
            raise click.UsageError("give either SOURCE (quick start) or --config, not both")
        if quick["pack_path"] is not None:
            raise click.UsageError("with --config, name a rule's pack in the file (pack: FILE)")
        config = load_config(config_path, thresholds=thresholds)
    elif source is None:
        raise click.UsageError("give a SOURCE to listen to, or --config monitor.yaml")
    else:
        config = _quick_config(source, thresholds=thresholds or (), thresholds_path=thresholds_path, **quick)
    overrides: dict[str, Any] = {
        k: v
        for k, v in (("model", model), ("device", device), ("threads", threads), ("database", db))
        if v is not None
    }
    config = dataclasses.replace(config, **overrides)
    if check:
        n = len(config.sources), len(config.rules), len(config.sinks)
        click.echo(f"ok: {n[0]} source(s), {n[1]} rule(s), {n[2]} sink(s)", err=True)
        return
    _run(config)


def _quick_config(
    source: str,
    *,
    labels: tuple[str, ...],
    labels_file: Path | None,
    alerts: tuple[str, ...],
    pack_path: Path | None,
    thresholds: tuple[tuple[str, float], ...],
    **o: Any,
) -> Any:
    from ..adapt.packs import load_pack
    from ..monitor.config import ClipOptions, MonitorConfig, SinkSpec
    from ..monitor.mqtt import MqttOptions
    from ..monitor.rules import Rule, layered_thresholds
    from ..monitor.sinks import WebhookOptions
    from ..monitor.sources import SourceSpec

    pack = load_pack(pack_path) if pack_path else None
    label_set = pack.labels if pack and not (labels or labels_file) else collect_labels(labels, labels_file)
    warn_unmatched_thresholds(thresholds, label_set, o.get("thresholds_path"))
    if not alerts:
        raise click.UsageError('name the label(s) to alert on with --alert, e.g. --alert "glass breaking"')
    folded = {x.casefold(): x for x in label_set}
    alert_labels = tuple(folded.get(a.strip().casefold(), a.strip()) for a in alerts)
    if pack is not None and not set(alert_labels) <= set(pack.labels):
        raise click.UsageError(
            f"--alert names a label the pack does not score; its labels: {', '.join(pack.labels)}"
        )
    against = tuple(x for x in label_set if x not in alert_labels)
    layers = (pack.label_thresholds if pack else (), thresholds)
    rule = Rule(
        name="alert",
        labels=alert_labels,
        against=against,
        threshold=o["threshold"],
        k=o["k"],
        n=o["n"],
        cooldown_s=o["cooldown_s"],
        max_quiet_s=o["max_quiet_s"],
        pack=pack,
        label_thresholds=layered_thresholds(alert_labels, *layers),
    )
    spec = SourceSpec(
        name=_source_name(source),
        **_source_kind(source),
        realtime=not o["fast"],
        input_rate_hz=o["rate"],
        channels=o["channels"],
        sample_format=o["pcm_format"],
        gate_dbfs=o["gate_dbfs"],
    )
    sinks = [SinkSpec(name="stdout", type="stdout", options="json" if o["as_json"] else "text")]
    if o["jsonl"]:
        sinks.append(SinkSpec(name="jsonl", type="jsonl", options=o["jsonl"]))
    if o["webhook"]:
        sinks.append(
            SinkSpec(
                name="webhook",
                type="webhook",
                options=WebhookOptions(url=o["webhook"], secret=o["webhook_secret"]),
            )
        )
    if o["mqtt"]:
        host, _, port = o["mqtt"].partition(":")
        sinks.append(
            SinkSpec(name="mqtt", type="mqtt", options=MqttOptions(host=host, port=int(port or 1883)))
        )
    return MonitorConfig(
        sources=(spec,),
        rules=(rule,),
        sinks=tuple(sinks),
        window_s=o["window_s"],
        hop_s=o["hop_s"],
        clips=ClipOptions(dir=o["clips_dir"], format=o["clip_format"]),
        metrics_port=o["metrics_port"],
    )


def _source_kind(source: str) -> dict[str, Any]:
    if source == "-":
        return {"kind": "stdin"}
    if source == "mic" or source.startswith("mic:"):
        return {"kind": "microphone", "target": source[4:]}
    if "://" in source:
        return {"kind": "url", "target": source}
    if not Path(source).is_file():
        raise click.UsageError(f"{source}: no such file (or give a URL, - for stdin, mic for the microphone)")
    return {"kind": "file", "target": source}


def _source_name(source: str) -> str:
    from ..monitor.sources import mask_url

    if source == "-":
        return "stdin"
    if source.startswith("mic"):
        return "microphone"
    text = mask_url(source) if "://" in source else Path(source).name
    return (
        re.sub(r"[^A-Za-z0-9_.-]+", "-", text.split("://")[-1].replace("***@", "")).strip("-")[:60]
        or "source"
    )


def _check_microphone(config: Any) -> None:
    """Say what is missing for microphone sources before the model loads (no traceback later)."""
    if not any(s.kind == "microphone" for s in config.sources):
        return
    try:
        import sounddevice  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "microphone input needs the sounddevice package: pip install 'earmark[monitor]'"
        ) from None
    except OSError as ex:  # sounddevice is there, the PortAudio library is not
        raise click.ClickException(
            f"microphone input needs the PortAudio library ({ex}): e.g. apt install libportaudio2, "
            "or listen to a file, URL or stdin instead"
        ) from None


def _run(config: Any) -> None:
    from ..monitor.runner import Monitor
    from .common import load_classifier

    _check_microphone(config)
    # one source hands the model one window per hop: every thread on it; several keep windows in flight
    clf = load_classifier(config.model, config.device, config.threads, throughput=len(config.sources) > 1)
    monitor = Monitor(config, clf)

    def stop(signum: int, frame: Any) -> None:
        monitor.request_stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        names = ", ".join(s.name for s in config.sources)
        click.echo(f"monitoring {names} with {clf.model_id} (Ctrl-C to stop)", err=True)
        summary = monitor.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for name, counts in summary.items():
        click.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), err=True)
    failed = monitor.errors()
    if failed:
        raise click.ClickException(
            "; ".join(
                f"the model failed: {error}" if name == "(model)" else f"source {name}: {error}"
                for name, error in failed.items()
            )
        )


@click.command("events", short_help="List monitor events; mark them correct or false alarms; export them.")
@click.option(
    "--since", default=None, help="Only events since then: 30m, 12h, 7d, or a date/time (2025-01-31T08:00)."
)
@click.option("--label", default=None, help="Only this label.")
@click.option("--source", default=None, help="Only this source.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EARMARK_DB",
    default=None,
    help="Event database (default: $EARMARK_HOME/earmark.db).",
)
@click.option(
    "--mark",
    nargs=2,
    metavar="ID VERDICT",
    default=None,
    help="Mark event ID 'correct' or 'false_alarm' (as the page's Events tab does).",
)
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the judged events' clips and a manifest.csv for 'earmark calibrate' / 'earmark fit'.",
)
@click.option(
    "--background-label",
    default="background",
    show_default=True,
    help="With --export: the label false alarms get.",
)
def events_cmd(
    since: str | None,
    label: str | None,
    source: str | None,
    limit: int,
    as_json: bool,
    db: Path | None,
    mark: tuple[str, str] | None,
    export_dir: Path | None,
    background_label: str,
) -> None:
    """List monitor events, newest first; mark them correct or false alarms; export the verdicts."""
    from ..errors import ConfigError
    from ..monitor import feedback
    from ..monitor.events import EventLog, parse_since
    from ..store import Database

    store = Database(db)
    if mark or export_dir:
        if mark:
            feedback.mark_event(store, mark[0], mark[1].replace("-", "_").replace(" ", "_"), via="cli")
            click.echo(f"{mark[0]}: {mark[1]}", err=True)
        if export_dir:
            summary = feedback.export_feedback(store, export_dir, background_label=background_label)
            counts = ", ".join(f"{k} {n}" for k, n in sorted(summary.examples.items())) or "none"
            click.echo(
                f"{summary.manifest}: {counts}"
                + (f"; {summary.without_clip} without a clip" if summary.without_clip else "")
            )
        return
    log = EventLog(store)
    try:
        since_iso = parse_since(since)
    except ConfigError as ex:
        raise click.BadParameter(str(ex), param_hint="--since") from None
    rows = log.list_events(since=since_iso, label=label, source=source, limit=limit)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False, sort_keys=True))
        return
    if not rows:
        click.echo("no events", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("started", "source", "label", "length", "peak", "status", "clip", "id"):
        table.add_column(col, justify="right" if col in ("length", "peak") else "left")
    for r in rows:
        length = f"{r['end_s'] - r['start_s']:.1f} s" if r["end_s"] is not None else "open"
        table.add_row(
            _local(r["started_at"]),
            r["source"],
            r["label"],
            length,
            f"{r['peak']:.2f}",
            r["closed_by"] or r["status"],
            "yes" if r["clip_path"] else "",
            r["id"],
        )
    Console().print(table)


def _local(iso: str) -> str:
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    return t.strftime("%Y-%m-%d %H:%M:%S")


COMMANDS = [monitor_cmd, events_cmd]
