"""earmark calibrate | fit: per-label thresholds and few-shot classifier packs from labelled audio."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from .common import load_classifier
from .eval_cmd import _cache, _load, _progress, _templates, data_options, run_options


def _embedded(clf: Any, ds: Any, window_s: float, hop_s: float, cache: Any) -> tuple[Any, list[Any]]:
    """Targets and embeddings of the readable files, with a progress bar; unreadable files are warned about."""
    import numpy as np

    from ..classify import AudioEmbedding
    from ..evaluate.runs import embed_dataset
    from ..types import ClassifyOptions

    win = ClassifyOptions(window_s=window_s, hop_s=hop_s)
    with _progress(len(ds.items), "embedding") as advance:
        done = embed_dataset(clf, ds, options=win, cache=cache, progress=advance)

    keep = [n for n, e in enumerate(done) if isinstance(e.result, AudioEmbedding)]
    if len(keep) < len(done):
        click.echo(f"warning: {len(done) - len(keep)} file(s) could not be read and were left out", err=True)
    if not keep:
        raise click.ClickException(f"none of the files in {ds.name} could be read")
    return np.asarray(ds.targets())[keep], [done[n].result for n in keep]


@click.command("calibrate")
@data_options
@click.option("-m", "--model", default=None, envvar="EARMARK_MODEL", help="Model alias, hub id or folder.")
@run_options
@click.option(
    "-p",
    "--target-precision",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.9,
    show_default=True,
    help="Wanted share of right answers among the answers given.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("thresholds.json"),
    show_default=True,
    help="Thresholds file to write (read by classify and tag --thresholds).",
)
@click.option(
    "--cv-folds",
    type=click.IntRange(2),
    default=5,
    show_default=True,
    help="Folds of the held-out check of the thresholds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the thresholds file to standard output too.")
def calibrate_cmd(
    data: Path,
    label_map: Path | None,
    folds: tuple[str, ...],
    model: str | None,
    device: str | None,
    threads: int | None,
    templates: tuple[str, ...],
    window_s: float,
    hop_s: float,
    cache_path: Path | None,
    no_cache: bool,
    target_precision: float,
    output: Path,
    cv_folds: int,
    as_json: bool,
) -> None:
    """Pick per-label thresholds that reach a target precision on labelled audio in DATA.

    DATA is laid out as for 'earmark eval'. Several --template values are
    averaged, as 'earmark classify' averages them: calibrate with the same
    labels, templates and model you classify with.
    """
    from ..adapt.calibrate import calibrate, held_out_check, save_thresholds
    from ..evaluate.runs import zero_shot_probs
    from ..types import ClassifyOptions

    ds = _load(data, label_map, folds)
    tpl = _templates(ds, templates)
    clf = load_classifier(model, device, threads)
    opts = clf.resolve_options(ClassifyOptions(templates=tpl, window_s=window_s, hop_s=hop_s))
    y, embs = _embedded(clf, ds, window_s, hop_s, _cache(cache_path, no_cache))
    probs = zero_shot_probs(clf, embs, ds.labels, opts)
    cal = calibrate(y, probs, ds.labels, target_precision=target_precision)
    held = held_out_check(y, probs, ds.labels, target_precision=target_precision, folds=cv_folds)
    save_thresholds(cal, output, model=clf.model_id, templates=tpl, extra={"data": ds.name, "held_out": held})
    for label, t in cal.labels.items():
        prec = "–" if t.precision is None else f"{t.precision:.1%}"
        click.echo(
            f"{label:30} {t.threshold:.3f}  {t.status:12} precision {prec:>6}  "
            f"answered {t.answered}/{t.support}"
        )
    hp = "–" if held["precision"] is None else f"{held['precision']:.1%}"
    click.echo(
        f"held out ({held['folds']}-fold cross-validation): precision {hp}, {held['coverage']:.1%} answered"
    )
    click.echo(f"wrote {output}")
    if as_json:
        click.echo(output.read_text(encoding="utf-8"), nl=False)


@click.command("fit", short_help="Train a few-shot classifier pack on labelled audio in DATA.")
@data_options
@click.option("-m", "--model", default=None, envvar="EARMARK_MODEL", help="Model alias, hub id or folder.")
@run_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Classifier pack file to write (e.g. bearings.pack.json).",
)
@click.option(
    "--method",
    type=click.Choice(["logreg", "prototype"]),
    default="logreg",
    show_default=True,
    help="Logistic regression started from the prototypes, or the prototypes alone.",
)
@click.option(
    "--text-prior",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="How many examples the label text counts as (0: ignore the text).",
)
@click.option(
    "--l2",
    type=click.FloatRange(0),
    default=0.05,
    show_default=True,
    help="logreg: pull towards the prototypes.",
)
@click.option(
    "--target-precision",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Calibrate per-label thresholds to this precision on cross-validated scores.",
)
@click.option(
    "--reject-quantile",
    type=click.FloatRange(0, 0.5, max_open=True),
    default=0.05,
    show_default=True,
    help="'None of these' floor (0: off): sounds unlike every class come out uncertain.",
)
@click.option(
    "--cv-folds", type=click.IntRange(2), default=5, show_default=True, help="Cross-validation folds."
)
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
def fit_cmd(
    data: Path,
    label_map: Path | None,
    folds: tuple[str, ...],
    model: str | None,
    device: str | None,
    threads: int | None,
    templates: tuple[str, ...],
    window_s: float,
    hop_s: float,
    cache_path: Path | None,
    no_cache: bool,
    output: Path,
    method: str,
    text_prior: float,
    l2: float,
    target_precision: float | None,
    reject_quantile: float,
    cv_folds: int,
    as_json: bool,
) -> None:
    """Train a few-shot classifier pack on labelled audio in DATA (a few to a few hundred files per class).

    The pack is a small head on frozen CLAP embeddings, mixed with the label
    texts' embeddings; use it with 'earmark classify --pack FILE'. Sounds
    unlike every class still come out uncertain.
    """
    from ..adapt.fewshot import FitOptions, clip_vectors
    from ..adapt.packs import fit_pack
    from ..evaluate.runs import zero_shot_probs
    from ..types import ClassifyOptions

    ds = _load(data, label_map, folds)
    tpl = _templates(ds, templates)
    fit_opts = FitOptions(
        method=method,  # type: ignore[arg-type]
        text_prior=text_prior,
        l2=l2,
        folds=cv_folds,
        target_precision=target_precision,
        reject_quantile=reject_quantile,
    ).check()
    clf = load_classifier(model, device, threads)
    opts = clf.resolve_options(ClassifyOptions(templates=tpl, window_s=window_s, hop_s=hop_s))
    y, embs = _embedded(clf, ds, window_s, hop_s, _cache(cache_path, no_cache))
    pack = fit_pack(
        clip_vectors([e.vectors for e in embs]),
        y,
        ds.labels,
        text=clf.text_embeddings(ds.labels, tpl),
        scale=clf.backend.logit_scale,
        model=clf.model_id,
        templates=tpl,
        options=fit_opts,
        zero_shot_probs=zero_shot_probs(clf, embs, ds.labels, opts),
    )
    pack = replace(pack, training={**pack.training, "data": ds.name})
    pack.save(output)
    _print_training(pack.training, output, as_json)


def _print_training(t: dict[str, Any], output: Path, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(t, ensure_ascii=False))
        return
    click.echo("examples: " + ", ".join(f"{k} {v}" for k, v in t["examples"].items()))
    click.echo(
        f"cross-validated ({t['cv_folds']} folds): pack accuracy {t['cv_accuracy']:.1%}, "
        f"macro-F1 {t['cv_macro_f1']:.1%}; zero-shot on the same files {t['zero_shot_accuracy']:.1%}"
    )
    click.echo(f"wrote {output}")


COMMANDS = [calibrate_cmd, fit_cmd]
