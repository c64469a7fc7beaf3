"""earmark model list | pull | info | import."""

from __future__ import annotations

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
def info_cmd(name: str | None, as_json: bool) -> None:
    """Size, fused or not, sample rate and location of a model."""
    info = models.model_info(name)
    rows = {
        "name": info.name,
        "path": str(info.path),
        "size_mb": round(info.size_bytes / 1e6, 1),
        "fused": info.fused,
        "sample_rate": info.sample_rate,
        "window_s": info.window_s,
        "embedding_dim": info.projection_dim,
    }
    if as_json:
        import json

        click.echo(json.dumps(rows))
    else:
        for k, v in rows.items():
            click.echo(f"{k:14} {v}")


COMMANDS = [model_group]
