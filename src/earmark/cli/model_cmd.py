"""earmark model list | pull | prepare | info | import."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from .. import models


@click.group("model")
def model_group() -> None:
    """Manage CLAP models: list, download, import for air-gapped machines, inspect."""


@model_group.command("list")
def list_cmd() -> None:
    """Known aliases and imported models, and whether each is here."""
    for name, source, path in models.list_models():
        where = str(path) if path else "not downloaded"
        click.echo(f"{name:32} {source:36} {where}")


@model_group.command("pull")
@click.argument("name")
def pull_cmd(name: str) -> None:
    """Download NAME (alias or hub id) into the model cache."""
    path = models.pull(name)
    click.echo(f"{models.canonical(name)} is ready in {path}")


@model_group.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Name to use it by (default: the folder's name).")
def import_cmd(folder: Path, name: str | None) -> None:
    """Register a copied model FOLDER so it loads by name without a network."""
    name, dest = models.import_model(folder, name)
    click.echo(f"imported {name} into {dest}; use it with --model {name}")


@model_group.command(
    "prepare", short_help="Prepare NAME for this CPU ahead of its first use (export, convert, measure)."
)
@click.argument("name", required=False)
@click.option(
    "--threads",
    "thread_counts",
    type=click.IntRange(1, None),
    multiple=True,
    help="Thread count to measure at (repeatable; default 1 and all cores).",
)
@click.option("--if-needed", is_flag=True, help="Do nothing when NAME is already prepared for this CPU.")
def prepare_cmd(name: str | None, thread_counts: tuple[int, ...], if_needed: bool) -> None:
    """Prepare NAME for this CPU ahead of its first use: export, convert, measure the backends.

    What the first use of a model does once (announced, about a minute for a full-size model on
    2 cores); run again, it measures the backends again and keeps the automatic choice unless
    another backend is at least 10 % faster. Progress goes to stderr.
    """
    from ..backends import artifacts
    from ..backends import prepare as prep
    from ..backends.select import remembered_choice

    path = models.resolve(name)
    model_id = models.canonical(name or os.environ.get("EARMARK_MODEL") or models.DEFAULT_MODEL)
    if if_needed:
        done = remembered_choice(artifacts.read_records(artifacts.artifact_dir(path, model_id)), None)
        if done:
            click.echo(f"{model_id} is prepared for this CPU (auto backend: {done})")
            return
    prep.announce(f"preparing {model_id} for this CPU (once, about {prep.estimate_s(path)} s)…")
    made = prep.prepare(name, threads=thread_counts or None)
    for choice in made.values():
        n = choice["threads"]
        click.echo(f"{model_id}: auto backend at {n} thread{'s' if n > 1 else ''}: {choice['backend']}")


@model_group.command("info", short_help="Size, sample rate, location and measured backends of a model.")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--measure", is_flag=True, help="Measure every backend's speed and deviation from fp32 here first (once)."
)
def info_cmd(name: str | None, as_json: bool, measure: bool) -> None:
    """Size, fused or not, sample rate and location of a model; backends measured on this machine."""
    from ..backends import artifacts

    info = models.model_info(name)
    if measure:
        _measure(name)
    rows: dict[str, object] = {
        "name": info.name,
        "path": str(info.path),
        "size_mb": round(info.size_bytes / 1e6, 1),
        "fused": info.fused,
        "sample_rate": info.sample_rate,
        "window_s": info.window_s,
        "embedding_dim": info.projection_dim,
    }
    model_id = models.canonical(name or os.environ.get("EARMARK_MODEL") or models.DEFAULT_MODEL)
    folder = artifacts.artifact_dir(info.path, model_id)
    records = artifacts.read_records(folder)
    from ..backends.select import remembered_choice

    choice = remembered_choice(records, None)
    rows["backends"] = records["backends"]
    rows["auto_backend"] = choice
    rows["auto_choices"] = records["choices"]
    if as_json:
        import json

        click.echo(json.dumps(rows))
        return
    for k, v in rows.items():
        if k not in ("backends", "auto_backend", "auto_choices"):
            click.echo(f"{k:14} {v}")
    _echo_backends(records["backends"], choice)
    _echo_choices(records["choices"])


def _measure(name: str | None) -> None:
    from ..backends import get_backend
    from ..backends.prepare import prepare
    from ..errors import EarmarkError

    prepare(name)
    try:
        get_backend("onnx-int8", model=name)
    except EarmarkError as ex:  # e.g. the onnx extra is missing: say so, keep the rest
        click.echo(f"onnx-int8 not measured: {ex}", err=True)


def _echo_backends(backends: dict[str, dict[str, object]], choice: str | None) -> None:
    """One line per measured backend: exact or not, deviation from PyTorch fp32, speed here."""
    from ..backends import artifacts

    if not backends:
        click.echo("backends       not measured yet (earmark model info NAME --measure)")
        return
    sig = artifacts.machine_signature(None)
    for bname, rec in sorted(backends.items()):
        dev: dict[str, float] = rec.get("deviation") or {}  # type: ignore[assignment]
        speeds: dict[str, float] = rec.get("ms_per_window") or {}  # type: ignore[assignment]
        speed = speeds.get(sig)
        kind = "exact" if rec.get("exact") else "approx"
        line = (
            f"backend {bname:11} {kind:6} vs fp32: audio cosine {dev.get('audio_cosine_min', float('nan')):.6f}"
            f" max diff {dev.get('audio_max_diff', float('nan')):.1e},"
            f" text cosine {dev.get('text_cosine_min', float('nan')):.6f}"
            f" max diff {dev.get('text_max_diff', float('nan')):.1e}"
        )
        if speed is not None:
            line += f"; {speed:.1f} ms per 10 s window here"
            measured: Any = rec.get("measured") or {}
            when = measured.get(sig)
            if when:
                line += f" ({when['measured_at']}, load {when['load_before']:.1f}->{when['load_after']:.1f})"
        click.echo(line)
    click.echo(f"auto backend   {choice or 'not chosen yet on this machine (earmark model prepare NAME)'}")


def _echo_choices(choices: dict[str, dict[str, Any]]) -> None:
    """Per measured thread count on this CPU: the choice, the figures, and when/under what load."""
    from ..backends import artifacts

    cpu = artifacts.cpu_signature()
    for rec in sorted((c for c in choices.values() if c.get("cpu") == cpu), key=lambda c: c["threads"]):
        figures = ", ".join(
            f"{n} {t:.1f} ms" for n, t in sorted(rec["ms_per_window"].items(), key=lambda x: x[1])
        )
        cond = rec.get("conditions") or {}
        line = f"auto at {rec['threads']} thread(s): {rec['backend']} ({figures})"
        if cond:
            busy = "; BUSY: every round under load, figures unreliable" if cond.get("busy") else ""
            line += (
                f"; measured {cond['measured_at']} at load {cond['load_before']:.1f}->{cond['load_after']:.1f}"
                f" on {cond['cores']} cores, {cond['rounds_kept']} rounds kept,"
                f" {cond['rounds_discarded']} discarded as busy{busy}"
            )
        click.echo(line)


COMMANDS = [model_group]
