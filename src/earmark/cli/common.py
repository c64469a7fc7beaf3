"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

import click

F = TypeVar("F", bound=Callable[..., Any])


BACKEND_META = "earmark.backend"


def _remember_backend(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # kept in the context, not passed to the command: every command with model options gets it
    if value:
        ctx.meta[BACKEND_META] = value


@overload
def model_options(f: F) -> F: ...


@overload
def model_options(f: None = None, *, threads_default: str = ...) -> Callable[[F], F]: ...


def model_options(f: F | None = None, *, threads_default: str = "all cores") -> Any:
    """--model, --device, --threads, --backend (read by :func:`load_classifier`).

    Use as ``@model_options``, or ``@model_options(threads_default=...)`` where a
    command picks its own thread count (the one place ``--help`` says it).
    """
    if f is None:
        return lambda g: model_options(g, threads_default=threads_default)
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
        help=f"CPU threads for the model (default: {threads_default}).",
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
    """Labels from every ``-l`` (each comma separated) and ``--labels-file``."""
    from ..labels import parse_labels

    if not labels and labels_file is None:
        raise click.UsageError('no labels given: name the candidates with -l, e.g. -l "dog barking, siren"')
    return parse_labels(*labels, labels_file)


def load_classifier(
    model: str | None, device: str | None, threads: int | None, *, throughput: bool = True, **kwargs: Any
) -> Any:
    """Build a Classifier, with a spinner on stderr while the model loads.

    ``throughput``: the command keeps several windows in flight (true of every command but
    ``classify`` of one short clip; see :class:`~earmark.classify.Classifier`).
    """
    from rich.console import Console

    from ..classify import Classifier

    ctx = click.get_current_context(silent=True)
    if ctx is not None and "backend" not in kwargs:
        kwargs["backend"] = ctx.meta.get(BACKEND_META)
    console = Console(stderr=True)
    with console.status("loading model…", spinner="dots"):
        return Classifier(model, device=device, threads=threads, throughput=throughput, **kwargs)


def warn_unmatched_thresholds(
    thresholds: tuple[tuple[str, float], ...], labels: tuple[str, ...], path: Path | None
) -> None:
    """Say so on stderr when a --thresholds file names none of the labels in use (it changes nothing)."""
    if not thresholds or not labels:
        return
    named = {label.casefold() for label, _ in thresholds}
    if not named & {label.casefold() for label in labels}:
        click.echo(
            f"warning: the thresholds file {path} matches none of the labels "
            f"({', '.join(labels[:5])}{', …' if len(labels) > 5 else ''}); it was calibrated for "
            f"{', '.join(sorted(label for label, _ in thresholds)[:5])}: using --threshold for all",
            err=True,
        )
