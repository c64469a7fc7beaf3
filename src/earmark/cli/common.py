"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


BACKEND_META = "earmark.backend"


def _remember_backend(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # kept in the context, not passed to the command: every command with model options gets it
    if value:
        ctx.meta[BACKEND_META] = value


def model_options(f: F) -> F:
    """--model, --device, --threads, --backend (read by :func:`load_classifier`)."""
    from ..backends import BACKENDS

    f = click.option(
        "--backend",
        type=click.Choice(list(BACKENDS), case_sensitive=False),
        default=None,
        envvar="EARMARK_BACKEND",
        show_envvar=True,
        expose_value=False,
        callback=_remember_backend,
        help="Inference backend; auto (default) picks the fastest exact one here, measured once.",
    )(f)
    f = click.option(
        "--threads",
        type=click.IntRange(1, 512),
        default=None,
        help="CPU threads for the model (default: all cores).",
    )(f)
    f = click.option(
        "--device", default=None, envvar="EARMARK_DEVICE", help="auto (default), cpu, cuda or cuda:N."
    )(f)
    f = click.option(
        "-m",
        "--model",
        default=None,
        envvar="EARMARK_MODEL",
        show_envvar=True,
        help="Model alias, hub id or folder (default: laion/clap-htsat-fused).",
    )(f)
    return f


def label_options(f: F) -> F:
    """-l/--labels (repeatable, comma separated) and --labels-file."""
    f = click.option(
        "--labels-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Text file with one label per line.",
    )(f)
    f = click.option(
        "-l",
        "--labels",
        "labels",
        multiple=True,
        help='Candidate labels, e.g. -l "dog, siren, glass breaking".',
    )(f)
    return f


def collect_labels(labels: tuple[str, ...], labels_file: Path | None) -> tuple[str, ...]:
    from ..labels import parse_labels

    return parse_labels(list(labels), labels_file)


def load_classifier(model: str | None, device: str | None, threads: int | None, **kwargs: Any) -> Any:
    """Build a Classifier, with a spinner on stderr while the model loads."""
    from rich.console import Console

    from ..classify import Classifier

    ctx = click.get_current_context(silent=True)
    if ctx is not None and "backend" not in kwargs:
        kwargs["backend"] = ctx.meta.get(BACKEND_META)
    console = Console(stderr=True)
    with console.status("loading model…", spinner="dots"):
        return Classifier(model, device=device, threads=threads, **kwargs)
