"""earmark classify FILE|DIR... -l "dog, siren, glass breaking"."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..errors import AudioError
from .common import (
    collect_labels,
    label_options,
    load_classifier,
    model_options,
    warn_unmatched_thresholds,
)


def expand_inputs(inputs: tuple[str, ...]) -> Iterator[str]:
    """Files as given; folders walked recursively for audio (by content or extension), in sorted order."""
    from ..audio.sniff import audio_files

    for item in inputs:
        if item == "-" or not Path(item).is_dir():
            yield item
        else:
            yield from audio_files(item)


def _many_windows(files: list[str], window_s: float) -> bool:
    """Whether the model will have several windows in flight: more than one file or a long one.

    A lone short clip is faster with every model thread on one call (see ``Classifier``'s
    ``throughput``); stdin and unreadable headers count as long.
    """
    from ..audio import describe
    from ..errors import EarmarkError

    if len(files) != 1 or files[0] == "-":
        return True
    try:
        duration = describe(files[0]).duration_s
    except EarmarkError:
        return False  # it fails again, with its message, when classified
    return duration is None or duration > window_s


@click.command("classify")
@click.argument("inputs", nargs=-1, required=True)
@label_options
@model_options
@click.option(
    "-t",
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.7,
    show_default=True,
    help="Below this confidence the answer is 'uncertain'.",
)
@click.option(
    "-k", "--top-k", type=click.IntRange(1), default=3, show_default=True, help="Best labels to show."
)
@click.option(
    "--template",
    "templates",
    multiple=True,
    help="Prompt template with {label}; repeat to average several. Default: 'This is a sound of {label}.'",
)
@click.option(
    "--window-s", type=float, default=10.0, show_default=True, help="Window length in seconds (≤ 10)."
)
@click.option(
    "--hop-s", type=float, default=5.0, show_default=True, help="Step between windows of long audio."
)
@click.option(
    "--aggregate",
    type=click.Choice(["mean", "max"]),
    default="mean",
    show_default=True,
    help="Clip score from windows: mean (a ranking that sums to 100 %), or max: per-label "
    "detection scores (each label's best window; they do not sum to 100 %).",
)
@click.option("--timeline", is_flag=True, help="Show what is heard when (long audio).")
@click.option(
    "--resolution",
    "resolution_s",
    type=click.FloatRange(0.05, 5.0),
    default=None,
    help="With --timeline: refine segment edges to about this many seconds with short windows.",
)
@click.option(
    "--pack",
    "pack_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Classifier pack from 'earmark fit': score its labels with its trained head (no -l needed).",
)
@click.option(
    "--thresholds",
    "thresholds_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Per-label thresholds file from 'earmark calibrate' (over --threshold).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output, one object per file.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV output, one row per file.")
def classify_cmd(
    inputs: tuple[str, ...],
    labels: tuple[str, ...],
    labels_file: Path | None,
    model: str | None,
    device: str | None,
    threads: int | None,
    threshold: float,
    top_k: int,
    templates: tuple[str, ...],
    window_s: float,
    hop_s: float,
    aggregate: str,
    timeline: bool,
    resolution_s: float | None,
    pack_path: Path | None,
    thresholds_path: Path | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Classify audio FILES (or every audio file in DIRS) against free-text labels.

    A file that cannot be read is reported and the rest go on; the exit code is
    1 if any failed. Use - to read one file from standard input. With --pack,
    a classifier pack from 'earmark fit' scores its own labels.
    """
    from ..adapt.calibrate import load_thresholds
    from ..adapt.packs import load_pack
    from ..types import DEFAULT_TEMPLATE, ClassifyOptions

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other: pick one output format")
    fmt = "json" if as_json else "csv" if as_csv else None
    pack = load_pack(pack_path) if pack_path else None
    if pack is not None and not (labels or labels_file):
        label_set = pack.labels
    else:
        label_set = collect_labels(labels, labels_file)
    label_thresholds = load_thresholds(thresholds_path) if thresholds_path else ()
    warn_unmatched_thresholds(label_thresholds, label_set, thresholds_path)
    options = ClassifyOptions(
        threshold=threshold,
        top_k=top_k,
        templates=templates or (DEFAULT_TEMPLATE,),
        window_s=window_s,
        hop_s=hop_s,
        aggregate=aggregate,  # type: ignore[arg-type]
        label_thresholds=label_thresholds,
    )
    files = list(expand_inputs(inputs))
    if not files:
        raise click.ClickException("no audio files found in " + ", ".join(inputs))
    clf = load_classifier(model, device, threads, options=options, throughput=_many_windows(files, window_s))
    clf.resolve_options()  # bad options fail before any work
    if pack is not None:
        pack.check(clf)
    render = _Renderer(fmt, label_set, timeline, detection=aggregate == "max")
    failed = 0
    if resolution_s is not None and not timeline:
        raise click.UsageError("--resolution refines the timeline: add --timeline")
    run = _run(
        clf, files, label_set, pack, show_progress=len(files) > 3 and fmt is None, resolution_s=resolution_s
    )
    for path, result in run:
        if isinstance(result, AudioError):
            failed += 1
            click.echo(f"error: {result}", err=True)
        else:
            render.add(path, result)
    render.close()
    if failed:
        click.echo(f"{failed} of {len(files)} file(s) failed", err=True)
        sys.exit(1)


def _run(
    clf: Any,
    files: list[str],
    labels: tuple[str, ...],
    pack: Any,
    *,
    show_progress: bool,
    resolution_s: float | None = None,
) -> Iterator[tuple[str, Any]]:
    """Predictions in input order through the stage (decoding overlaps the model, as in ``tag``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    stdin: list[bytes] = []  # "-" is read once: refinement decodes it again

    def source(path: str) -> Any:
        if path != "-":
            return path
        if not stdin:
            stdin.append(sys.stdin.buffer.read())
        data = io.BytesIO(stdin[0])
        data.name = "<stdin>"
        return data

    def sources() -> Iterator[Any]:
        for path in files:
            yield source(path)

    results: Iterator[tuple[str, Any]] = zip(
        files, clf.classify_many(sources(), labels, pack=pack), strict=True
    )
    if resolution_s is not None:
        results = ((path, _refined(clf, source(path), p, resolution_s, pack)) for path, p in results)
    if not show_progress:
        yield from results
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, console=_stderr_console()) as progress:
        task = progress.add_task("classifying", total=len(files))
        for item in results:
            yield item
            progress.advance(task)


def _refined(clf: Any, source: Any, prediction: Any, resolution_s: float, pack: Any) -> Any:
    """The prediction with sub-second segment edges (``--resolution``), as the monitor refines events."""
    if isinstance(prediction, AudioError):
        return prediction
    from ..refine import refine_prediction

    try:
        return refine_prediction(clf, source, prediction, resolution_s=resolution_s, pack=pack)
    except AudioError as ex:
        return ex


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


class _Renderer:
    """Table for people (printed as results arrive), JSON Lines or CSV for scripts."""

    def __init__(
        self, fmt: str | None, labels: tuple[str, ...], timeline: bool, *, detection: bool = False
    ) -> None:
        self.fmt, self.labels, self.timeline, self.detection = fmt, labels, timeline, detection
        self._csv: Any = None

    def add(self, path: str, p: Any) -> None:
        if self.fmt == "json":
            click.echo(json.dumps(p.to_dict(windows=self.timeline), ensure_ascii=False))
        elif self.fmt == "csv":
            if self._csv is None:
                self._csv = csv.writer(sys.stdout)
                self._csv.writerow(["file", "label", "top", "probability", "uncertain", *self.labels])
            scores = {s.label: s.probability for s in p.scores}
            self._csv.writerow(
                [path, p.label or "", p.top.label, f"{p.top.probability:.4f}", int(p.uncertain)]
                + [f"{scores[label]:.4f}" for label in self.labels]
            )
        else:
            self._table(path, p)

    def _table(self, path: str, p: Any) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console()
        if self.detection:
            self._detections(console, path, p)
            return
        if p.uncertain:
            answer = f"[yellow]uncertain[/] (best guess: {escape(p.top.label)} {p.top.probability:.0%} < {p.threshold:.0%})"
        else:
            answer = f"[bold green]{escape(p.top.label)}[/]"
        console.print(
            f"[bold]{escape(path)}[/]  ({p.duration_s:.1f} s) → {answer}", soft_wrap=True, highlight=False
        )
        table = Table(show_edge=False, box=None, padding=(0, 2))
        table.add_column("label")
        table.add_column("confidence", justify="right")
        table.add_column("")
        for s in p.top_scores:
            table.add_row(escape(s.label), f"{s.probability:.1%}", "█" * int(round(s.probability * 20)))
        console.print(table)
        if self.timeline:
            for seg in p.timeline:
                console.print(f"  {_clock(seg.start_s)}–{_clock(seg.end_s)}  {seg.label}  ({seg.score:.0%})")
            if not p.timeline:
                console.print("  (nothing heard above the threshold)")

    def _detections(self, console: Any, path: str, p: Any) -> None:
        """--aggregate max: each label's best window, a score per label (not a ranking summing to 100 %)."""
        from rich.markup import escape
        from rich.table import Table

        limits = dict(p.label_thresholds)
        found = [s for s in p.scores if s.probability >= limits.get(s.label, p.threshold)]
        answer = (
            "detected: " + ", ".join(f"[bold green]{escape(s.label)}[/]" for s in found)
            if found
            else f"[yellow]nothing detected[/] (no label reaches {p.threshold:.0%} in any window)"
        )
        console.print(
            f"[bold]{escape(path)}[/]  ({p.duration_s:.1f} s) → {answer}", soft_wrap=True, highlight=False
        )
        table = Table(show_edge=False, box=None, padding=(0, 2))
        table.add_column("label")
        table.add_column("peak (best window)", justify="right")
        table.add_column("")
        for s in p.top_scores:
            table.add_row(escape(s.label), f"{s.probability:.1%}", "█" * int(round(s.probability * 20)))
        console.print(table)
        console.print(
            "  per-label detection scores: each label's highest window probability; "
            "several labels can reach 100 % in one file",
            style="dim",
            highlight=False,
        )

    def close(self) -> None:
        sys.stdout.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:04.1f}"


COMMANDS = [classify_cmd]
