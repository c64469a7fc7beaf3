"""Benchmark of evaluation: what the embedding cache saves, and fitting at ESC-50 scale.

1. ``run_eval`` on N synthetic 5 s clips with the full-size random-weight
   fused model (speed only: its scores mean nothing and are not reported),
   first with an empty embedding cache, then again with other templates (all
   embeddings from the cache).
2. Pure numpy at ESC-50 scale (2000 clips, 50 classes, 512-d): a classifier
   pack fit (5-fold cross-validation + final fit), a linear-probe
   cross-validation, metrics and calibration.

    python bench/bench_evaluate.py [--files 24] [--threads N] [--model PATH]

Writes bench/RESULTS-evaluate.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))


def _clips(root: Path, n: int) -> Path:
    from earmark import synth
    from helpers import encode

    kinds = list(synth.SOUNDS)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        (root / kind).mkdir(parents=True, exist_ok=True)
        encode(synth.make(kind, 5.0, seed=i), root / kind / f"{kind}-{i}.wav")
    return root


def bench_cache(model: str, n_files: int, threads: int | None) -> dict[str, float]:
    from earmark import Classifier, datasets
    from earmark.evaluate.cache import EmbeddingCache
    from earmark.evaluate.runs import EvalOptions, run_eval
    from earmark.store import Database

    with tempfile.TemporaryDirectory() as tmp:
        ds = datasets.load(_clips(Path(tmp) / "data", n_files))
        t0 = time.perf_counter()
        clf = Classifier(model, threads=threads)
        clf.embed(str(ds.items[0].path))  # warm-up, not counted
        load_s = time.perf_counter() - t0
        cache = EmbeddingCache(Database(Path(tmp) / "cache.db"))
        t0 = time.perf_counter()
        first = run_eval([clf], ds, options=EvalOptions(baseline=True), cache=cache)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = run_eval(
            [clf],
            ds,
            options=EvalOptions(templates=("{label}", "the sound of {label}"), average_templates=True),
            cache=cache,
        )
        second_s = time.perf_counter() - t0
        files = first.files[clf.model_id]
        assert all(e.cached for e in second.files[clf.model_id])
        return {
            "files": len(ds.items),
            "load_and_warm_s": load_s,
            "first_s": first_s,
            "per_file_s": float(np.mean([e.seconds for e in files])),
            "second_s": second_s,
            "second_variants": len(second.variants),
        }


def bench_fit() -> dict[str, float]:
    from earmark.adapt import fewshot
    from earmark.adapt.calibrate import calibrate, held_out_check
    from earmark.adapt.packs import fit_pack
    from earmark.evaluate.metrics import compute_metrics

    rng = np.random.default_rng(0)
    n_classes, per, dim, scale = 50, 40, 512, 33.0
    centres = rng.normal(size=(n_classes, dim))
    x = np.concatenate([centres[c] + 5.0 * rng.normal(size=(per, dim)) for c in range(n_classes)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), per)
    text = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    labels = [f"class {c}" for c in range(n_classes)]
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    pack = fit_pack(
        x,
        y,
        labels,
        text=text,
        scale=scale,
        model="m",
        templates=("{label}",),
        options=fewshot.FitOptions(target_precision=0.9),
    )
    out["fit_pack_s"] = time.perf_counter() - t0
    out["fit_cv_accuracy"] = pack.training["cv_accuracy"]  # noisy clusters: not trivially separable
    t0 = time.perf_counter()
    cos, _ = fewshot.cross_val_cosines(
        x, y, n_classes, text=None, scale=scale, options=fewshot.FitOptions(text_prior=0.0)
    )
    out["probe_cv_s"] = time.perf_counter() - t0
    probs = fewshot.probabilities(cos, scale, None)
    t0 = time.perf_counter()
    compute_metrics(y, probs, labels)
    calibrate(y, probs, labels, target_precision=0.9)
    held_out_check(y, probs, labels, target_precision=0.9)
    out["metrics_and_calibration_s"] = time.perf_counter() - t0
    return out


def _machine() -> str:
    from host import cpu_name, uptime

    return f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; `uptime`: {uptime()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default=None, help="model folder (default: the full-size random-weight model)")
    args = ap.parse_args()
    from fullsize import build_fullsize

    model = args.model or str(build_fullsize())
    machine_before = _machine()
    cache = bench_cache(model, args.files, args.threads)
    fit = bench_fit()
    text = f"""# Evaluation benchmark

Machine: {machine_before}
Model: full-size `clap-htsat-fused` architecture with random weights (speed only; its scores are not reported).
Threads: {args.threads or "all cores"}.

## Embedding cache (`run_eval`, {cache["files"]} synthetic 5 s WAV clips)

| step | seconds |
|---|---:|
| load model + one warm-up clip | {cache["load_and_warm_s"]:.1f} |
| first run: decode + embed every clip, 1 template + linear probe | {cache["first_s"]:.2f} |
| mean decode + embed time per clip | {cache["per_file_s"]:.3f} |
| second run, {cache["second_variants"]} variants (3 template sets + probe), all from the cache | {cache["second_s"]:.2f} |

## ESC-50 scale, pure numpy (2000 clips, 50 classes, 512-d)

| step | seconds |
|---|---:|
| `fit_pack` (logreg, 5-fold cross-validation + final fit, calibration) | {fit["fit_pack_s"]:.2f} |
| linear-probe 5-fold cross-validation | {fit["probe_cv_s"]:.2f} |
| metrics + calibration + cross-validated calibration check | {fit["metrics_and_calibration_s"]:.3f} |

Load after the run: {_machine().split("`uptime`: ")[1]}

The machine is shared with other jobs; with a load average above the core
count every time here is an upper bound. What the cache saves (second run vs
first) and the pure-numpy costs are the point: embedding dominates, and a
re-run with other labels or templates costs text embeddings and scoring only.
"""
    (ROOT / "bench" / "RESULTS-evaluate.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
