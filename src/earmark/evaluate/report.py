"""Write an evaluation report: Markdown, JSON, CSV and PNG plots in one folder.

``write_report(result, folder)`` creates:

- ``report.md``: summary table of every variant, then per variant the
  per-class precision/recall, most-confused pairs, the coverage table and the
  confusion matrix plot; the slowest files and any unreadable ones;
- ``report.json``: the same numbers for scripts (``format: earmark-eval``);
- ``predictions.csv``: each file's true label and every variant's answer;
- ``coverage.png`` and ``confusion-N.png`` (matplotlib, extra ``eval``;
  skipped with ``plots=False``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MissingExtraError

if TYPE_CHECKING:
    from .runs import EvalResult, Variant

__all__ = ["report_dict", "write_report"]

FORMAT = "earmark-eval"
VERSION = 1
SLOWEST = 10


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _slowest(result: EvalResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for model, files in result.files.items():
        for e in files:
            duration = getattr(e.result, "duration_s", None)
            rows.append(
                {
                    "model": model,
                    "path": e.path,
                    "seconds": round(e.seconds, 4),
                    "cached": e.cached,
                    "duration_s": None if duration is None else round(duration, 3),
                }
            )
    rows.sort(key=lambda r: (-r["seconds"], r["path"]))
    return rows[:SLOWEST]


def _variant_dict(n: int, v: Variant) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"v{n}",
        "name": v.name,
        "kind": v.kind,
        "model": v.model,
        "templates": list(v.templates),
        "metrics": v.metrics.to_dict(),
    }
    if v.calibration is not None:
        out["calibration"] = {
            "target_precision": v.calibration.target_precision,
            "labels": {k: dataclasses.asdict(t) for k, t in v.calibration.labels.items()},
            "held_out": v.held_out,
        }
    if v.own_thresholds is not None:
        out["own_thresholds"] = v.own_thresholds
    return out


def report_dict(result: EvalResult) -> dict[str, Any]:
    """The JSON report as a dict."""
    ds = result.dataset
    folds = sorted({i.fold for i in result.items if i.fold is not None})
    embedding = {
        model: {
            "files": len(files),
            "embedded": sum(not e.cached for e in files),
            "cached": sum(e.cached for e in files),
            "seconds": round(sum(e.seconds for e in files if not e.cached), 3),
        }
        for model, files in result.files.items()
    }
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": {
            "name": ds.name,
            "files": len(ds.items),
            "scored": len(result.items),
            "labels": list(ds.labels),
            "counts": {label: sum(i.label == label for i in result.items) for label in ds.labels},
            "folds": folds or None,
        },
        "options": dataclasses.asdict(result.options),
        "errors": [{"path": p, "reason": r} for p, r in result.errors],
        "embedding": embedding,
        "variants": [_variant_dict(n, v) for n, v in enumerate(result.variants, 1)],
        "slowest": _slowest(result),
    }


def _md_summary(doc: dict[str, Any]) -> list[str]:
    t = doc["options"]["threshold"]
    lines = [
        f"| | variant | model | accuracy | top-3 | top-5 | macro-F1 | answered ≥ {t:g} | right when answered |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in doc["variants"]:
        m, at = v["metrics"], v["metrics"]["at_threshold"]
        lines.append(
            f"| {v['id']} | {v['name']} | {v['model']} | {_pct(m['accuracy'])} | {_pct(m['top3'])} | "
            f"{_pct(m['top5'])} | {_pct(m['macro_f1'])} | {_pct(at['coverage'])} | {_pct(at['accuracy'])} |"
        )
    return lines


def _md_variant(v: dict[str, Any], plots: bool) -> list[str]:
    m = v["metrics"]
    out = [f"## {v['id']}: {v['name']}", "", f"Model `{v['model']}`, {m['n']} files.", ""]
    out += ["| label | precision | recall | F1 | files | answered as |", "|---|---:|---:|---:|---:|---:|"]
    for c in m["per_class"]:
        out.append(
            f"| {c['label']} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | "
            f"{c['support']} | {c['predicted']} |"
        )
    pairs = m["confused_pairs"]
    out += [
        "",
        "Most confused (true → answered): "
        + (", ".join(f"{p['true']} → {p['answer']} ({p['count']})" for p in pairs) if pairs else "none")
        + ".",
        "",
    ]
    out += ["| threshold | answered | right when answered | right of all |", "|---:|---:|---:|---:|"]
    for pt in m["coverage"]:
        out.append(
            f"| {pt['threshold']:g} | {_pct(pt['coverage'])} ({pt['answered']}) | {_pct(pt['accuracy'])} | "
            f"{_pct(pt['correct_of_all'])} |"
        )
    cal = v.get("calibration")
    if cal:
        held = cal["held_out"]
        kept = ", ".join(f"{k} {t['threshold']:.3f} ({t['status']})" for k, t in cal["labels"].items())
        out += [
            "",
            f"Thresholds for {_pct(cal['target_precision'])} precision: {kept}.",
            f"Cross-validated ({held['folds']} folds): precision {_pct(held['precision'])} at "
            + f"{_pct(held['coverage'])} answered.",
        ]
    own = v.get("own_thresholds")
    if own:
        out += [
            "",
            f"With the pack's own thresholds: {_pct(own['coverage'])} answered, "
            + f"{_pct(own['precision'])} right when answered.",
        ]
    if plots:
        out += ["", f"![confusion matrix of {v['id']}](confusion-{v['id'][1:]}.png)"]
    return out + [""]


def _markdown(doc: dict[str, Any], plots: bool) -> str:
    ds = doc["dataset"]
    lines = [
        f"# earmark evaluation: {ds['name']}",
        "",
        f"{doc['created_at']}. {ds['scored']} of {ds['files']} files scored, {len(ds['labels'])} labels"
        + (f", folds {', '.join(ds['folds'])}" if ds["folds"] else "")
        + ". "
        "Accuracy, top-k, F1 and the confusion matrices use each variant's best label; "
        "the coverage columns count only answers at or above the threshold.",
        "",
    ]
    lines += _md_summary(doc) + [""]
    if plots:
        lines += ["![coverage and accuracy as the threshold moves](coverage.png)", ""]
    for v in doc["variants"]:
        lines += _md_variant(v, plots)
    lines += [
        "## Slowest files",
        "",
        "| file | model | seconds | audio s | cached |",
        "|---|---|---:|---:|---|",
    ]
    for r in doc["slowest"]:
        lines.append(
            f"| {r['path']} | {r['model']} | {r['seconds']:.3f} | {r['duration_s']} | "
            f"{'yes' if r['cached'] else 'no'} |"
        )
    lines += [""] + [
        f"Embedding with {m}: {e['embedded']} files decoded and embedded ({e['seconds']:.1f} s), "
        f"{e['cached']} from the cache."
        for m, e in doc["embedding"].items()
    ]
    if doc["errors"]:
        lines += ["", "## Unreadable files (left out)", ""] + [
            f"- {e['path']}: {e['reason']}" for e in doc["errors"]
        ]
    return "\n".join(lines) + "\n"


def _write_predictions(result: EvalResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        head = ["path", "label", "fold"]
        for n in range(1, len(result.variants) + 1):
            head += [f"v{n} answer", f"v{n} probability"]
        w.writerow(head)
        labels = result.dataset.labels
        for row, item in enumerate(result.items):
            cells: list[Any] = [item.path, item.label, item.fold or ""]
            for v in result.variants:
                j = int(np.argmax(v.probs[row]))
                cells += [labels[j], f"{v.probs[row, j]:.6f}"]
            w.writerow(cells)


def write_report(result: EvalResult, folder: str | Path, *, plots: bool = True) -> dict[str, Any]:
    """Write ``report.md``, ``report.json``, ``predictions.csv`` (and plots) into ``folder``.

    Args:
        result: from :func:`earmark.evaluate.runs.run_eval`.
        folder: output folder (created).
        plots: draw PNGs (needs matplotlib: ``pip install 'earmark[eval]'``).

    Returns:
        The JSON report as a dict.

    Raises:
        MissingExtraError: ``plots`` without matplotlib installed.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    doc = report_dict(result)
    if plots:
        _coverage_plot(result, out / "coverage.png")
        for n, v in enumerate(result.variants, 1):
            _confusion_plot(v, result.dataset.labels, out / f"confusion-{n}.png")
    (out / "report.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(doc, plots), encoding="utf-8")
    _write_predictions(result, out / "predictions.csv")
    return doc


def _figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot: no global backend state is touched)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("plots in evaluation reports", "eval") from None
    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _coverage_plot(result: EvalResult, path: Path) -> None:
    fig = _figure(11, 4.5)
    left, right = fig.subplots(1, 2)
    for n, v in enumerate(result.variants, 1):
        pts = v.metrics.coverage
        t = [p.threshold for p in pts]
        line = left.plot(t, [p.coverage for p in pts], linestyle="--")[0]
        left.plot(
            t,
            [np.nan if p.accuracy is None else p.accuracy for p in pts],
            color=line.get_color(),
            label=f"v{n} {v.name}"[:60],
        )
        right.plot(
            [p.coverage for p in pts],
            [np.nan if p.accuracy is None else p.accuracy for p in pts],
            marker=".",
            color=line.get_color(),
            label=f"v{n}",
        )
    left.axvline(result.options.threshold, color="grey", linewidth=0.8)
    left.set(
        xlabel="threshold",
        ylabel="share",
        title="answered (dashed) and right when answered (solid)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    right.set(
        xlabel="answered (coverage)",
        ylabel="right when answered",
        title="accuracy vs coverage",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
    )
    left.legend(fontsize=7, loc="lower left")
    right.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)


def _confusion_plot(v: Variant, labels: tuple[str, ...], path: Path) -> None:
    cm = np.asarray(v.metrics.confusion, dtype=np.float64)
    n = len(labels)
    size = min(4 + 0.3 * n, 24)
    fig = _figure(size + 1.5, size)
    ax = fig.subplots()
    # colour by share of the true class, so small classes are as visible as large ones
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set(xlabel="answered", ylabel="true", title=f"{v.name}"[:80])
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        int(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    fig.tight_layout()
    fig.savefig(path)


def require_matplotlib() -> None:
    """Raise :class:`MissingExtraError` unless matplotlib can be imported (checked before long work)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError("plots in evaluation reports", "eval") from None
