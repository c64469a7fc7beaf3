"""Run an evaluation: labelled files -> embeddings (cached) -> scorers -> metrics.

One run embeds every file once per model (through the embedding cache) and
then scores the same embeddings several ways, each a *variant* of the report:

- zero-shot, per model and prompt template (and the templates averaged);
- a supervised linear probe on the same embeddings, cross-validated (the
  dataset's folds when it has them), to show how far zero-shot is from what
  labelled examples give;
- classifier packs (``earmark fit``), on data they were not fitted on.

The CLI renders the result with :mod:`earmark.evaluate.report`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..adapt import fewshot
from ..adapt.calibrate import Calibration, answered_mask, calibrate, held_out_check
from ..classify import AudioEmbedding
from ..errors import AudioError, ConfigError
from ..types import DEFAULT_TEMPLATE, ClassifyOptions
from .cache import Embedded, EmbeddingCache, embed_files
from .datasets import Dataset, Item
from .metrics import EvalMetrics, compute_metrics

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack
    from ..classify import Classifier

__all__ = ["EvalOptions", "EvalResult", "Variant", "embed_dataset", "run_eval", "zero_shot_probs"]

log = logging.getLogger("earmark")

Progress = Callable[[Embedded], None]


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """What an evaluation run compares.

    Attributes:
        templates: prompt templates, each its own zero-shot variant (empty: the
            dataset's usual template, else earmark's default).
        average_templates: add a variant with all templates averaged.
        threshold: the operating confidence threshold of the report.
        window_s: analysis window in seconds.
        hop_s: hop between windows of long files.
        baseline: add the cross-validated linear probe per model.
        cv_folds: folds for the probe and the calibration check (a dataset's own folds win).
        target_precision: also calibrate per-label thresholds to this precision.
    """

    templates: tuple[str, ...] = ()
    average_templates: bool = False
    threshold: float = 0.7
    window_s: float = 10.0
    hop_s: float = 5.0
    baseline: bool = True
    cv_folds: int = 5
    target_precision: float | None = None


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One scorer's results on the evaluated items.

    Attributes:
        name: how the report names it.
        kind: ``zero-shot``, ``linear probe (cv)`` or ``pack``.
        model: model id.
        templates: prompt templates (zero-shot), else empty.
        probs: (items, labels) probabilities in dataset label order.
        metrics: the metrics.
        calibration: thresholds fitted on all items (with ``target_precision``).
        held_out: cross-validated check of those thresholds (see :func:`held_out_check`).
        own_thresholds: a pack's own calibrated thresholds and the answers they give here.
    """

    name: str
    kind: str
    model: str
    templates: tuple[str, ...]
    probs: np.ndarray
    metrics: EvalMetrics
    calibration: Calibration | None = None
    held_out: dict[str, Any] | None = None
    own_thresholds: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    """Everything a report shows.

    Attributes:
        dataset: the labelled set as loaded.
        items: the items scored (unreadable ones left out).
        errors: (path, reason) of files that could not be read.
        variants: the scorers compared.
        files: per model, each file's embedding time and whether it was cached.
        options: the run's options.
    """

    dataset: Dataset
    items: tuple[Item, ...]
    errors: tuple[tuple[str, str], ...]
    variants: tuple[Variant, ...]
    files: dict[str, tuple[Embedded, ...]] = field(default_factory=dict)
    options: EvalOptions = field(default_factory=EvalOptions)


def embed_dataset(
    classifier: Classifier,
    dataset: Dataset,
    *,
    options: ClassifyOptions | None = None,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> list[Embedded]:
    """Embed every item's file (through ``cache``), in dataset order."""
    out = []
    for done in embed_files(classifier, [i.path for i in dataset.items], options=options, cache=cache):
        out.append(done)
        if progress:
            progress(done)
    return out


def zero_shot_probs(
    classifier: Classifier,
    embeddings: Sequence[AudioEmbedding],
    labels: Sequence[str],
    options: ClassifyOptions,
) -> np.ndarray:
    """(items, labels) zero-shot probabilities, columns in ``labels`` order."""
    rows = []
    for emb in embeddings:
        scores = {s.label: s.probability for s in classifier.score(emb, labels, options=options).scores}
        rows.append([scores[label] for label in labels])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(labels))


def pack_probs(
    pack: ClassifierPack,
    embeddings: Sequence[AudioEmbedding],
    labels: Sequence[str],
    options: ClassifyOptions,
) -> np.ndarray:
    """(items, labels) probabilities of a classifier pack (same label set), columns in ``labels`` order."""
    rows = []
    for emb in embeddings:
        scores = {s.label: s.probability for s in pack.predict(emb, options).scores}
        rows.append([scores[label] for label in labels])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(labels))


def _fold_ids(items: Sequence[Item]) -> np.ndarray | None:
    folds = [i.fold for i in items]
    if None in folds or len(set(folds)) < 2:
        return None
    index = {f: n for n, f in enumerate(sorted(set(folds)))}  # type: ignore[type-var]
    return np.asarray([index[f] for f in folds])


def _variant(
    name: str,
    kind: str,
    model: str,
    templates: tuple[str, ...],
    probs: np.ndarray,
    y: np.ndarray,
    labels: tuple[str, ...],
    opts: EvalOptions,
) -> Variant:
    metrics = compute_metrics(y, probs, labels, threshold=opts.threshold)
    cal = held = None
    if opts.target_precision is not None:
        cal = calibrate(
            y, probs, labels, target_precision=opts.target_precision, default_threshold=opts.threshold
        )
        held = held_out_check(
            y,
            probs,
            labels,
            target_precision=opts.target_precision,
            default_threshold=opts.threshold,
            folds=opts.cv_folds,
        )
    return Variant(
        name=name,
        kind=kind,
        model=model,
        templates=templates,
        probs=probs,
        metrics=metrics,
        calibration=cal,
        held_out=held,
    )


def _template_sets(dataset: Dataset, opts: EvalOptions) -> list[tuple[str, ...]]:
    templates = opts.templates or (dataset.template or DEFAULT_TEMPLATE,)
    sets: list[tuple[str, ...]] = [(t,) for t in templates]
    if opts.average_templates and len(templates) > 1:
        sets.append(tuple(templates))
    return sets


def run_eval(
    classifiers: Sequence[Classifier],
    dataset: Dataset,
    *,
    options: EvalOptions | None = None,
    cache: EmbeddingCache | None = None,
    packs: Mapping[str, ClassifierPack] | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate zero-shot (per model and template), the linear probe and packs on one labelled set.

    Args:
        classifiers: one per model to compare.
        dataset: the labelled files.
        options: :class:`EvalOptions`.
        cache: embedding cache (``None``: embed everything).
        packs: classifier packs to score too, by name; each must fit one of the models.
        progress: called after each file is embedded.

    Raises:
        ConfigError: no file could be read, or a pack fits none of the models.
    """
    opts = options or EvalOptions()
    win = ClassifyOptions(window_s=opts.window_s, hop_s=opts.hop_s, threshold=opts.threshold)
    fitting = _match_packs(packs or {}, classifiers, dataset.labels)  # before any audio work
    per_model = {
        clf.model_id: embed_dataset(clf, dataset, options=win, cache=cache, progress=progress)
        for clf in classifiers
    }
    bad: dict[str, str] = {}
    for done in per_model.values():
        for e in done:
            if isinstance(e.result, AudioError):
                bad.setdefault(e.path, e.result.reason)
    keep = [n for n, item in enumerate(dataset.items) if item.path not in bad]
    if not keep:
        raise ConfigError(f"none of the {len(dataset.items)} files in {dataset.name} could be read")
    items = tuple(dataset.items[n] for n in keep)
    y = np.asarray(dataset.targets())[keep]
    variants: list[Variant] = []
    for clf in classifiers:
        embs = [per_model[clf.model_id][n].result for n in keep]
        assert all(isinstance(e, AudioEmbedding) for e in embs)
        variants += _model_variants(clf, embs, items, y, dataset, opts, win)  # type: ignore[arg-type]
        for name, pack in (packs or {}).items():
            if clf.model_id in fitting[name]:
                probs = pack_probs(pack, embs, dataset.labels, win)  # type: ignore[arg-type]
                variants.append(_pack_variant(name, pack, clf.model_id, probs, y, dataset.labels, opts))
    return EvalResult(
        dataset=dataset,
        items=items,
        errors=tuple(bad.items()),
        variants=tuple(variants),
        files={k: tuple(v) for k, v in per_model.items()},
        options=opts,
    )


def _pack_variant(
    name: str,
    pack: ClassifierPack,
    model: str,
    probs: np.ndarray,
    y: np.ndarray,
    labels: tuple[str, ...],
    opts: EvalOptions,
) -> Variant:
    """A pack's variant; its own calibrated thresholds (if any) are reported as ``own_thresholds``."""
    v = _variant(f"pack {name}", "pack", model, (), probs, y, labels, opts)
    if not pack.label_thresholds:
        return v
    given = dict(pack.label_thresholds)
    thresholds = [given.get(label, opts.threshold) for label in labels]
    answered = answered_mask(probs, thresholds)
    correct = int((answered & (np.argmax(probs, axis=1) == y)).sum())
    n_ans = int(answered.sum())
    own = {
        "thresholds": given,
        "answered": n_ans,
        "correct": correct,
        "coverage": n_ans / y.size,
        "precision": correct / n_ans if n_ans else None,
    }
    return replace(v, own_thresholds=own)


def _fits(pack: ClassifierPack, clf: Classifier) -> bool:
    try:
        pack.check(clf)
    except ConfigError:
        return False
    return True


def _match_packs(
    packs: Mapping[str, ClassifierPack], classifiers: Sequence[Classifier], labels: Sequence[str]
) -> dict[str, set[str]]:
    """Pack name -> ids of the models it fits; a pack for other labels or no model here is an error."""
    out = {}
    for name, pack in packs.items():
        if set(pack.labels) != set(labels):
            raise ConfigError(
                f"pack {name} scores "
                + ", ".join(pack.labels)
                + "; the data's labels are "
                + ", ".join(labels)
            )
        out[name] = {c.model_id for c in classifiers if _fits(pack, c)}
        if not out[name]:
            raise ConfigError(
                f"pack {name} was fitted on {pack.model}, which is not among the models evaluated"
            )
    return out


def _model_variants(
    clf: Classifier,
    embs: list[AudioEmbedding],
    items: tuple[Item, ...],
    y: np.ndarray,
    dataset: Dataset,
    opts: EvalOptions,
    win: ClassifyOptions,
) -> list[Variant]:
    out = []
    labels = dataset.labels
    for templates in _template_sets(dataset, opts):
        probs = zero_shot_probs(
            clf, embs, labels, ClassifyOptions(templates=templates, window_s=win.window_s, hop_s=win.hop_s)
        )
        name = "zero-shot · " + (
            " + ".join(repr(t) for t in templates)
            if len(templates) < 3
            else f"{len(templates)} templates averaged"
        )
        out.append(_variant(name, "zero-shot", clf.model_id, templates, probs, y, labels, opts))
    if opts.baseline:
        probe = fewshot.FitOptions(method="logreg", text_prior=0.0, folds=opts.cv_folds)
        x = fewshot.clip_vectors([e.vectors for e in embs])
        scale = clf.backend.logit_scale
        cos, folds = fewshot.cross_val_cosines(
            x, y, len(labels), text=None, scale=scale, options=probe, fold_ids=_fold_ids(items)
        )
        name = f"linear probe ({len(np.unique(folds))}-fold cv)"
        out.append(
            _variant(
                name,
                "linear probe (cv)",
                clf.model_id,
                (),
                fewshot.probabilities(cos, scale, None),
                y,
                labels,
                opts,
            )
        )
    return out
