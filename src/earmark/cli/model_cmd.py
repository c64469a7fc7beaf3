"""earmark model list | pull | info | import."""

from __future__ import annotations

import os
from pathlib import Path

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


@model_group.command("info")
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
    choice = records["choices"].get(artifacts.machine_signature(None), {}).get("backend")
    rows["backends"] = records["backends"]
    rows["auto_backend"] = choice
    if as_json:
        import json

        click.echo(json.dumps(rows))
        return
    for k, v in rows.items():
        if k not in ("backends", "auto_backend"):
            click.echo(f"{k:14} {v}")
    _echo_backends(records["backends"], choice)


@model_group.command("prepare")
@click.argument("name", required=False)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads the server will use (default: earmark serve's default here).",
)
def prepare_cmd(name: str | None, threads: int | None) -> None:
    """Do once now what the first start of NAME would do: export it to ONNX, measure the backends here and
    remember the fastest, so `earmark serve` starts fast (the container image runs this at build time for
    a model baked in)."""
    from ..backends import artifacts, get_backend
    from .serve_cmd import default_threads

    threads = threads or default_threads()
    path = models.resolve(name)
    get_backend("auto", model=name, threads=threads)
    model_id = models.canonical(str(name or os.environ.get("EARMARK_MODEL") or models.DEFAULT_MODEL))
    folder = artifacts.artifact_dir(path, model_id)
    choice = (
        artifacts.read_records(folder)["choices"].get(artifacts.machine_signature(threads), {}).get("backend")
    )
    click.echo(
        f"{model_id} is prepared in {folder}: auto backend {choice or 'torch'} with {threads} threads here"
    )


def _measure(name: str | None) -> None:
    from ..backends import get_backend
    from ..errors import EarmarkError

    get_backend("auto", model=name)
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
        click.echo(line)
    click.echo(f"auto backend   {choice or 'not chosen yet on this machine'}")


COMMANDS = [model_group]
