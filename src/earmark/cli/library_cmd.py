"""earmark tag / undo / review / search / similar / export: the sound library commands."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .common import collect_labels, label_options, load_classifier, model_options, warn_unmatched_thresholds

F = TypeVar("F", bound=Callable[..., Any])


def db_option(f: F) -> F:
    return click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar="EARMARK_DB",
        show_envvar=True,
        help="Library database (default: $EARMARK_HOME/earmark.db).",
    )(f)


def open_db(db_path: Path | None) -> Any:
    from ..library.schema import migrate
    from ..store import Database

    return migrate(Database(db_path))


def last_model(db: Any) -> str | None:
    """The model of the newest tagging run, so search/review use what tagged the files."""
    row = db.conn.execute("SELECT model FROM lib_runs WHERE kind='tag' ORDER BY id DESC LIMIT 1").fetchone()
    return row["model"] if row else None


@click.command("tag")
@click.argument(
    "inputs", nargs=-1, required=True, metavar="DIRS...", type=click.Path(exists=True, path_type=Path)
)
@label_options
@model_options
@db_option
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    default=0.8,
    show_default=True,
    help="Top score needed to file a file under its label; below it, it goes to review.",
)
@click.option(
    "--thresholds",
    "thresholds_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Per-label thresholds file from 'earmark calibrate' (over --min-confidence).",
)
@click.option(
    "--pack",
    "pack_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Classifier pack from 'earmark fit': tag with its labels and trained head (no -l needed).",
)
@click.option(
    "--sort-into",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="File into OUT/<label>/ (and OUT/_review/).",
)
@click.option("--move", is_flag=True, help="Move files instead of copying them.")
@click.option("--review-in-place", is_flag=True, help="Leave files that need review where they are.")
@click.option("--dry-run", is_flag=True, help="Show the filing plan; copy or move nothing.")
@click.option(
    "--skip-duplicates",
    is_flag=True,
    help="File one copy per recording (the best; see 'earmark duplicates'); skipped files stay put.",
)
@click.option(
    "--denoise", is_flag=True, help="Spectral-gating noise reduction before embedding (needs noisereduce)."
)
@click.option("--retry-errors", is_flag=True, help="Try again files that failed to decode before.")
@click.option(
    "--window-s", type=float, default=10.0, show_default=True, help="Window length in seconds (≤ 10)."
)
@click.option(
    "--hop-s", type=float, default=5.0, show_default=True, help="Step between windows of long audio."
)
@click.option("--template", "templates", multiple=True, help="Prompt template with {label}; repeatable.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run on a Ray cluster (ADDRESS, or a local one when omitted; write --ray=ADDRESS before DIRS).",
)
@click.option(
    "--actors", type=click.IntRange(1), default=None, help="Model actors with --ray (default: CPUs/2)."
)
@click.option("--gpus-per-actor", type=float, default=0.0, help="GPUs per model actor with --ray.")
def tag_cmd(
    inputs: tuple[Path, ...],
    labels: tuple[str, ...],
    labels_file: Path | None,
    model: str | None,
    device: str | None,
    threads: int | None,
    db_path: Path | None,
    min_confidence: float,
    thresholds_path: Path | None,
    pack_path: Path | None,
    sort_into: Path | None,
    move: bool,
    review_in_place: bool,
    dry_run: bool,
    skip_duplicates: bool,
    denoise: bool,
    retry_errors: bool,
    window_s: float,
    hop_s: float,
    templates: tuple[str, ...],
    ray_address: str | None,
    actors: int | None,
    gpus_per_actor: float,
) -> None:
    """Tag every audio file in DIRS (recursively) into the library database.

    Unchanged files are skipped, changed labels re-use stored embeddings, and a
    killed run picks up where it stopped. With --sort-into, confident files are
    copied (or moved) into OUT/<label>/ and the rest into OUT/_review/; every
    file operation is journalled, so `earmark undo RUN_ID` puts them back.
    Files that do not decode are recorded as errors; the exit status is 1 only
    when a copy or move failed. With --pack, a classifier pack from 'earmark
    fit' scores its own labels (stored embeddings are re-scored, not decoded).
    """
    from ..adapt.calibrate import load_thresholds
    from ..adapt.packs import load_pack
    from ..library import FilingOptions, ModelRef, TagOptions, tag_paths
    from ..types import DEFAULT_TEMPLATE, ClassifyOptions

    pack = load_pack(pack_path) if pack_path else None
    label_set = collect_labels(labels, labels_file) if pack is None or labels or labels_file else ()
    label_thresholds = load_thresholds(thresholds_path) if thresholds_path else ()
    warn_unmatched_thresholds(label_thresholds, label_set or (pack.labels if pack else ()), thresholds_path)
    options = TagOptions(
        labels=label_set,
        min_confidence=min_confidence,
        denoise=denoise,
        retry_errors=retry_errors,
        pack=pack,
        classify=ClassifyOptions(
            window_s=window_s,
            hop_s=hop_s,
            templates=templates or (DEFAULT_TEMPLATE,),
            label_thresholds=label_thresholds,
        ),
    ).resolved()
    filing = None
    if sort_into is not None:
        filing = FilingOptions(
            sort_into=sort_into,
            move=move,
            review_in_place=review_in_place,
            dry_run=dry_run,
            skip_duplicates=skip_duplicates,
        )
    elif move or dry_run or review_in_place or skip_duplicates:
        raise click.UsageError(
            "--move, --dry-run, --review-in-place and --skip-duplicates need --sort-into OUT"
        )
    db = open_db(db_path)
    from ..models import DEFAULT_MODEL

    name = model or DEFAULT_MODEL
    if ray_address is not None:
        from ..distributed import RayOptions, tag_paths_ray

        ray_opts = RayOptions(
            address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor, device=device
        )
        events = tag_paths_ray(db, inputs, options, ModelRef(name), filing, ray_opts)
    else:
        ref = ModelRef(name, lambda: load_classifier(model, device, threads))
        events = tag_paths(db, inputs, options, ref, filing)
    from .library_view import draw_tag_run

    if draw_tag_run(events):
        raise SystemExit(1)


@click.command("undo")
@click.argument("run_ids", nargs=-1, type=int)
@db_option
@click.option("--list", "list_runs", is_flag=True, help="List recent runs and what they filed.")
@click.option("--json", "as_json", is_flag=True, help="With --list: one JSON object per run.")
def undo_cmd(run_ids: tuple[int, ...], db_path: Path | None, list_runs: bool, as_json: bool) -> None:
    """Put back every file that run RUN_ID copied or moved (newest run first when several).

    Each file is verified by hash before anything is removed; a copy whose
    original is gone is moved back instead of deleted.
    """
    from ..library import undo_run

    db = open_db(db_path)
    if list_runs or not run_ids:
        from .library_view import print_runs

        print_runs(db, as_json=as_json)
        return
    failed = 0
    for run_id in sorted(run_ids, reverse=True):
        counts: dict[str, int] = {}
        for r in undo_run(db, run_id):
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
            if r.outcome == "failed":
                failed += 1
                click.echo(f"cannot undo {r.original.dst}: {r.error}", err=True)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to undo"
        click.echo(f"run {run_id}: {summary}")
    if failed:
        raise SystemExit(1)


@click.command("search", short_help="Find library files that sound like a text description.")
@click.argument("query")
@db_option
@model_options
@click.option(
    "-k", "--top-k", "k", type=click.IntRange(1), default=20, show_default=True, help="Files to list."
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
def search_cmd(
    query: str,
    db_path: Path | None,
    model: str | None,
    device: str | None,
    threads: int | None,
    k: int,
    as_json: bool,
) -> None:
    """Find library files that sound like a text description (QUERY, such as "glass breaking").

    Files are ranked by their best window's similarity to the text.
    """
    from ..library.search import search_text

    db = open_db(db_path)
    clf = load_classifier(model or last_model(db), device, threads)
    t = time.perf_counter()
    hits = search_text(db, clf, query, k=k)
    _print_hits(hits, as_json, time.perf_counter() - t)


@click.command("similar")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@db_option
@model_options
@click.option(
    "-k", "--top-k", "k", type=click.IntRange(1), default=20, show_default=True, help="Files to list."
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
def similar_cmd(
    file: str,
    db_path: Path | None,
    model: str | None,
    device: str | None,
    threads: int | None,
    k: int,
    as_json: bool,
) -> None:
    """Find library files that sound like FILE (in the library or not)."""
    from ..library.search import similar_to

    db = open_db(db_path)
    clf = load_classifier(model or last_model(db), device, threads)
    t = time.perf_counter()
    hits = similar_to(db, clf, file, k=k)
    _print_hits(hits, as_json, time.perf_counter() - t)


def _print_hits(hits: list[Any], as_json: bool, seconds: float) -> None:
    if as_json:
        for h in hits:
            click.echo(json.dumps(h.to_dict(), ensure_ascii=False))
        return
    if not hits:
        click.echo("no tagged files to search; run `earmark tag DIR -l ...` first", err=True)
        return
    for i, h in enumerate(hits, 1):
        click.echo(
            f"{i:3d}. {h.score:6.3f}  {h.start_s:7.1f}-{h.end_s:<7.1f} {h.top_label or '-':<16} {h.path}"
        )
    click.echo(f"({len(hits)} files in {seconds * 1000:.0f} ms)", err=True)


@click.command("export")
@db_option
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default="csv", show_default=True
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output file (default: stdout)."
)
@click.option("--windows", is_flag=True, help="One row per analysis window instead of per file.")
def export_cmd(db_path: Path | None, fmt: str, output: str | None, windows: bool) -> None:
    """Export the library: one row per file (or per window) as CSV, JSON Lines or Parquet."""
    from ..library.export import export

    db = open_db(db_path)
    if output in (None, "-"):
        if fmt == "parquet":
            raise click.UsageError("parquet is binary: give an output file with -o FILE.parquet")
        n = export(db, sys.stdout, fmt, windows=windows)
    else:
        n = export(db, output, fmt, windows=windows)
    click.echo(f"{n} rows", err=True)


def _review_cmd() -> click.Command:
    from .library_review import review_cmd

    return review_cmd


COMMANDS = [tag_cmd, undo_cmd, _review_cmd(), search_cmd, similar_cmd, export_cmd]
