"""The boundary test set (tiny model, synthetic scenes), shared by the test and bench/bench_boundaries.py.

Scenes from :func:`earmark.synth.scene` (beep, chirp or clicks events of 1.5-20 s between hum,
noise and silence) run through the real monitor; each true event is matched to the monitor's
events of its label that overlap it. Errors are measured for the coarse estimate (from the long
windows alone) and the refined one, from the same run. What ``classify --timeline`` finds comes
from the same windows (the monitor's window scores equal classify's at the same hop).

These are scores of a 6-sound toy model on synthetic audio: they check the method, they are not
accuracy on real sounds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from earmark import synth, timeline
from earmark.monitor.config import ClipOptions, MonitorConfig
from earmark.monitor.rules import Rule
from earmark.monitor.runner import Monitor, WindowResult
from earmark.monitor.sources import SourceSpec
from earmark.refine import RefineOptions
from earmark.store import Database

KINDS = ("beep", "chirp", "clicks")
BACKGROUNDS = ("hum", "noise", "silence")
HOP_S = 2.0
THRESHOLD = 0.7
REFINE = RefineOptions()


def rule() -> Rule:
    """Alert on any of the event sounds; one window over the threshold opens an event, as one
    window over it makes a ``classify --timeline`` segment."""
    return Rule(
        name="events",
        labels=KINDS,
        against=BACKGROUNDS,
        threshold=THRESHOLD,
        k=1,
        n=1,
        cooldown_s=0.0,
        max_quiet_s=4.0,
    )


@dataclass
class Outcome:
    """One scene's result: per true event, the matched monitor events and whether classify found it."""

    truth: list[tuple[str, float, float]]
    events: list[dict[str, Any]]
    matches: list[list[dict[str, Any]]] = field(default_factory=list)
    found_by_classify: list[bool] = field(default_factory=list)
    seconds: float = 0.0


def run_scene(
    classifier: Any,
    path: Path,
    truth: list[tuple[str, float, float]],
    tmp: Path,
    refine: RefineOptions | None = REFINE,
) -> Outcome:
    import time

    windows: list[WindowResult] = []
    config = MonitorConfig(
        sources=(SourceSpec(name="scene", kind="file", target=str(path), realtime=False, gate_dbfs=None),),
        rules=(rule(),),
        hop_s=HOP_S,
        clips=ClipOptions(enabled=False),
        refine=refine,
    )
    t0 = time.perf_counter()
    monitor = Monitor(
        config, classifier, db=Database(tmp / f"{path.stem}.db"), sinks=[], on_window=windows.append
    )
    monitor.run()
    out = Outcome(
        truth=truth, events=monitor.events.list_events(limit=10_000), seconds=time.perf_counter() - t0
    )
    labels = KINDS + BACKGROUNDS
    spans = [(w.start_s, w.end_s) for w in windows]
    probs = np.array([[w.probs["events"][x] for x in labels] for w in windows])
    segments = timeline.segments(labels, spans, probs, [THRESHOLD] * len(labels))
    for kind, a, b in truth:
        out.matches.append(
            sorted(
                (
                    e
                    for e in out.events
                    if e["label"] == kind
                    and min(e["start_s"], e["coarse_start_s"]) < b
                    and max(e["end_s"], e["coarse_end_s"]) > a
                ),
                key=lambda e: e["start_s"],
            )
        )
        out.found_by_classify.append(any(s.label == kind and s.start_s < b and s.end_s > a for s in segments))
    return out


def make_scene(seconds: float, events: int, seed: int, folder: Path, rate: int) -> tuple[Path, list[Any]]:
    from helpers import encode

    wave, truth = synth.scene(seconds, events, seed=seed, rate=rate, kinds=KINDS, backgrounds=BACKGROUNDS)
    return encode(wave, folder / f"scene-{seed}.flac", rate=rate), truth


def scenes(total: int, seed: int) -> list[tuple[float, int, int]]:
    """(seconds, events, seed) per file until ``total`` events: 2-5 minutes, ~one event per 30 s."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, int, int]] = []
    left = total
    while left > 0:
        seconds = float(rng.uniform(120.0, 300.0))
        n = min(left, max(1, int(seconds // 30)))
        out.append((round(seconds, 1), n, seed * 100 + len(out)))
        left -= n
    return out


def scene_files(total: int, seed: int, folder: Path, rate: int) -> list[tuple[float, Path, list[Any]]]:
    """The whole set: encoded files holding ``total`` events, as (seconds, path, truth) per file."""
    out = []
    for length, n, file_seed in scenes(total, seed):
        while True:
            try:
                path, truth = make_scene(length, n, file_seed, folder, rate)
                break
            except ValueError:  # these lengths did not fit: another draw
                file_seed += 1000
        out.append((length, path, truth))
    return out


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """Median and 90th percentile absolute errors (coarse, refined), missed and split events."""
    err: dict[str, list[float]] = {k: [] for k in ("coarse_start", "coarse_end", "start", "end")}
    missed = missed_by_classify = split = total = 0
    for o in outcomes:
        for (_, a, b), found, classify_found in zip(o.truth, o.matches, o.found_by_classify, strict=True):
            total += 1
            missed_by_classify += not classify_found
            if not found:
                missed += classify_found  # missed although classify --timeline finds it
                continue
            split += len(found) > 1
            first, last = found[0], found[-1]
            err["coarse_start"].append(abs(first["coarse_start_s"] - a))
            err["coarse_end"].append(abs(last["coarse_end_s"] - b))
            err["start"].append(abs(first["start_s"] - a))
            err["end"].append(abs(last["end_s"] - b))
    out: dict[str, Any] = {
        "events": total,
        "matched": len(err["start"]),
        "missed": missed,
        "not_found_by_classify": missed_by_classify,
        "split": split,
        "refined_starts": sum(e.get("start_by") == "refined" for o in outcomes for e in o.events),
        "refined_ends": sum(e.get("end_by") == "refined" for o in outcomes for e in o.events),
        "monitor_events": sum(len(o.events) for o in outcomes),
    }
    for key, values in err.items():
        out[f"{key}_median"] = round(statistics.median(values), 3) if values else None
        out[f"{key}_p90"] = round(float(np.percentile(values, 90)), 3) if values else None
    return out
