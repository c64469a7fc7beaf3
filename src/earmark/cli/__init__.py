"""The ``earmark`` command line: one click group, one module per command family.

Commands parse arguments, call the library and render results. Library errors
(:class:`~earmark.errors.EarmarkError`) become one-line messages and a non-zero
exit, translated once in :class:`_Group`. Heavy imports happen inside commands,
so ``earmark --help`` stays instant.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import click

from .. import __version__
from ..errors import EarmarkError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EarmarkError as ex:
            raise click.ClickException(str(ex)) from None


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    click.echo(f"warning: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="earmark")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Zero-shot audio classification with CLAP: name the sounds, earmark finds them."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    warnings.showwarning = _show_warning


def _register() -> None:
    from . import (
        classify_cmd,
        eval_cmd,
        fit_cmd,
        library_cmd,
        library_dups,
        model_cmd,
        monitor_cmd,
        serve_cmd,
    )

    modules = (classify_cmd, model_cmd, serve_cmd, library_cmd, library_dups, monitor_cmd, eval_cmd, fit_cmd)
    for module in modules:
        for command in module.COMMANDS:
            cli.add_command(command)


_register()

__all__ = ["cli"]
