"""earmark eval: measure label sets, templates, models and packs on labelled audio.

The data and run options here are shared with ``earmark calibrate`` and ``earmark fit`` (``fit_cmd``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def data_options(f: F) -> F:
    """DATA argument, --label-map, --fold."""
    f = click.option(
        "--fold", "folds", multiple=True, help="Use only this fold of a manifest or ESC-50 (repeatable)."
    )(f)
    f = click.option(
        "--label-map",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="JSON or CSV file: class name -> label text the model reads.",
    )(f)
    f = click.argument("data", type=click.Path(exists=True, path_type=Path))(f)
    return f


def run_options(f: F) -> F:
    """--device, --threads, --template, --window-s, --hop-s, --cache/--no-cache."""
    f = click.option("--no-cache", is_flag=True, help="Embed every file again; store nothing.")(f)
    f = click.option(
        "--cache",
        "cache_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="SQLite file of the embedding cache (default: $EARMARK_HOME/earmark.db).",
    )(f)
    f = click.option("--hop-s", type=float, default=5.0, show_default=True, help="Step between windows.")(f)
    f = click.option(
        "--window-s", type=float, default=10.0, show_default=True, help="Window length (≤ 10 s)."
    )(f)
    f = click.option(
        "--template",
        "templates",
        multiple=True,
        help="Prompt template with {label} (repeatable). Default: the dataset's usual one "
        "(LAION's for ESC-50), else 'This is a sound of {label}.'",
    )(f)
    f = click.option(
        "--threads", type=click.IntRange(1, 512), default=None, help="CPU threads for the model."
    )(f)
    f = click.option(
        "--device", default=None, envvar="EARMARK_DEVICE", help="auto (default), cpu, cuda or cuda:N."
    )(f)
    return f


def _cache(cache_path: Path | None, no_cache: bool) -> Any:
    from ..evaluate.cache import EmbeddingCache
    from ..store import Database

    return None if no_cache else EmbeddingCache(Database(cache_path) if cache_path else None)


@contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[Any], None]]:
    """A progress bar on stderr; yields the callback that advances it (and reports unreadable files)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=total)

        def advance(done: Any) -> None:
            from ..errors import AudioError

            if isinstance(done.result, AudioError):
                bar.console.print(
                    f"warning: left out {done.result}", soft_wrap=True, markup=False, highlight=False
                )
            bar.advance(task)

        yield advance


def _load(data: Path, label_map: Path | None, folds: tuple[str, ...]) -> Any:
    from ..evaluate import datasets

    ds = datasets.load(data, label_map=label_map, folds=folds)
    counts = ", ".join(f"{k} {v}" for k, v in ds.counts().items())
    click.echo(f"{ds.name}: {len(ds.items)} files, {len(ds.labels)} labels ({counts})", err=True)
    return ds


def _templates(ds: Any, templates: tuple[str, ...]) -> tuple[str, ...]:
    from ..types import DEFAULT_TEMPLATE

    return templates or (ds.template or DEFAULT_TEMPLATE,)


@click.command("eval")
@data_options
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    help="Model alias, hub id or folder (repeat to compare; default: $EARMARK_MODEL or laion/clap-htsat-fused).",
)
@run_options
@click.option("--average-templates", is_flag=True, help="Also score with all --template values averaged.")
@click.option(
    "-t",
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.7,
    show_default=True,
    help="Operating threshold: answers below it count as 'uncertain'.",
)
@click.option(
    "--baseline/--no-baseline",
    default=True,
    show_default=True,
    help="Cross-validated supervised linear probe on the same embeddings.",
)
@click.option(
    "--cv-folds",
    type=click.IntRange(2),
    default=5,
    show_default=True,
    help="Folds of the probe and calibration check (a manifest's or ESC-50's own folds win for the probe).",
)
@click.option(
    "--pack",
    "packs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also score with a classifier pack from 'earmark fit' (use data it was not fitted on).",
)
@click.option(
    "--calibrate",
    "target_precision",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Also fit per-label thresholds for this precision (writes thresholds.json).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("earmark-eval"),
    show_default=True,
    help="Output folder for report.md, report.json, predictions.csv and plots.",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (no matplotlib needed).")
@click.option("--json", "as_json", is_flag=True, help="Print report.json to standard output.")
def eval_cmd(
    data: Path,
    label_map: Path | None,
    folds: tuple[str, ...],
    models: tuple[str, ...],
    device: str | None,
    threads: int | None,
    templates: tuple[str, ...],
    window_s: float,
    hop_s: float,
    cache_path: Path | None,
    no_cache: bool,
    average_templates: bool,
    threshold: float,
    baseline: bool,
    cv_folds: int,
    packs: tuple[Path, ...],
    target_precision: float | None,
    out: Path,
    no_plots: bool,
    as_json: bool,
) -> None:
    """Measure how well labels work on labelled audio in DATA.

    DATA is a folder with one sub-folder per class, a CSV/JSONL manifest
    (path,label[,fold]) or an ESC-50 tree (meta/esc50.csv + audio/). Compares
    prompt templates, models, a supervised linear probe and classifier packs;
    writes a report folder. Embeddings are cached, so re-running with other
    labels or templates does not decode or embed the audio again.
    """
    from ..adapt.packs import load_pack
    from ..evaluate.report import require_matplotlib, write_report
    from ..evaluate.runs import EvalOptions, run_eval
    from .common import load_classifier

    if not no_plots:
        require_matplotlib()  # fail before the long part
    ds = _load(data, label_map, folds)
    stems = [p.stem for p in packs]
    loaded_packs = {(p.stem if stems.count(p.stem) == 1 else str(p)): load_pack(p) for p in packs}
    opts = EvalOptions(
        templates=templates,
        average_templates=average_templates,
        threshold=threshold,
        window_s=window_s,
        hop_s=hop_s,
        baseline=baseline,
        cv_folds=cv_folds,
        target_precision=target_precision,
    )
    clfs = [load_classifier(m, device, threads) for m in dict.fromkeys(models or (None,))]
    for clf in clfs:
        clf.resolve_options(window_s=window_s, hop_s=hop_s, templates=_templates(ds, templates))
    with _progress(len(ds.items) * len(clfs), "embedding") as advance:
        result = run_eval(
            clfs, ds, options=opts, cache=_cache(cache_path, no_cache), packs=loaded_packs, progress=advance
        )
    doc = write_report(result, out, plots=not no_plots)
    if target_precision is not None:
        _write_first_thresholds(result, out / "thresholds.json")
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False))
    else:
        _print_summary(doc, out)
    if result.errors:
        click.echo(
            f"warning: {len(result.errors)} of {len(ds.items)} file(s) could not be read and were left out "
            "(listed in the report)",
            err=True,
        )


def _write_first_thresholds(result: Any, path: Path) -> None:
    from ..adapt.calibrate import save_thresholds

    v = next(v for v in result.variants if v.kind == "zero-shot")
    save_thresholds(
        v.calibration,
        path,
        model=v.model,
        templates=v.templates,
        extra={"data": result.dataset.name, "held_out": v.held_out},
    )


def _print_summary(doc: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = doc["options"]["threshold"]
    several = len({v["model"] for v in doc["variants"]}) > 1
    table = Table(
        show_edge=False,
        title_justify="left",
        title=f"{doc['dataset']['scored']} files, {len(doc['dataset']['labels'])} labels",
    )
    for col in ("", "accuracy", "top-3", "macro-F1", f"answered ≥{t:g}", "right if answered"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_column("variant", overflow="fold")

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}%"

    for v in doc["variants"]:
        m = v["metrics"]
        name = escape(
            f"{v['name']} [{v['model']}]" if several else v["name"]
        )  # names and paths are not markup
        table.add_row(
            v["id"],
            pct(m["accuracy"]),
            pct(m["top3"]),
            pct(m["macro_f1"]),
            pct(m["at_threshold"]["coverage"]),
            pct(m["at_threshold"]["accuracy"]),
            name,
        )
    Console().print(table)
    click.echo(f"report: {out / 'report.md'}")


COMMANDS = [eval_cmd]
