"""Event boundaries: how far the monitor's event start/end lie from the sound's, coarse vs refined.

Generates 50 events (beep, chirp or clicks, 1.5-20 s) between hum, noise and silence at random
(seeded) times in 2-5 minute files (earmark.synth.scene), runs each file through the real
monitor with the tiny test model (10 s windows, 2 s hop, one window over 0.7 opens an event,
as one makes a `classify --timeline` segment), and reports the median and 90th-percentile
absolute start and end error before refinement (the long windows alone) and after (1 s windows
over the buffered audio), the events missed (of those `classify --timeline` finds), and the
events split in two. Each file also runs once without refinement: the time ratio is what
refining costs.

These are scores of a 6-sound toy model on synthetic sounds: they check the method, not the
accuracy on real sounds.

    python bench/bench_boundaries.py [--events 50] [--seed 0] [--out bench/RESULTS-boundaries.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-boundaries.md")
    args = ap.parse_args()

    from host import cpu_name, uptime

    import boundary_set as bs
    from earmark.classify import Classifier
    from helpers import TINY_MODEL

    clf = Classifier(str(TINY_MODEL), threads=1)
    load_before = uptime()
    outcomes, coarse_s, refined_s, seconds = [], 0.0, 0.0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for length, path, truth in bs.scene_files(args.events, args.seed, folder, clf.sample_rate):
            seed = path.stem.removeprefix("scene-")
            seconds += length
            (folder / f"c{seed}").mkdir()
            (folder / f"r{seed}").mkdir()
            t0 = time.perf_counter()
            bs.run_scene(clf, path, truth, folder / f"c{seed}", refine=None)
            coarse_s += time.perf_counter() - t0
            o = bs.run_scene(clf, path, truth, folder / f"r{seed}")
            refined_s += o.seconds
            outcomes.append(o)
            print(f"{path.name}: {length:.0f} s, {len(truth)} events, {bs.summary([o])}", flush=True)
    s = bs.summary(outcomes)
    print(s)
    args.out.write_text(report(s, outcomes, seconds, refined_s / coarse_s, cpu_name(), load_before, uptime()))
    print(f"wrote {args.out}")


def report(
    s: dict[str, Any], outcomes: list[Any], seconds: float, ratio: float, cpu: str, before: str, after: str
) -> str:
    rows = [
        "| | median | 90th percentile |",
        "|---|---|---|",
        f"| start, coarse (long windows only) | {s['coarse_start_median']} s | {s['coarse_start_p90']} s |",
        f"| start, refined | **{s['start_median']} s** | **{s['start_p90']} s** |",
        f"| end, coarse | {s['coarse_end_median']} s | {s['coarse_end_p90']} s |",
        f"| end, refined | **{s['end_median']} s** | **{s['end_p90']} s** |",
    ]
    detail = []
    for n, o in enumerate(outcomes, 1):
        for (kind, a, b), found, by_classify in zip(o.truth, o.matches, o.found_by_classify, strict=True):
            got = "; ".join(
                f"{e['start_s']:.2f}-{e['end_s']:.2f} (coarse {e['coarse_start_s']:.1f}-{e['coarse_end_s']:.1f},"
                f" {e['start_by']}/{e['end_by']})"
                for e in found
            )
            missed = "missed" + ("" if by_classify else " (classify --timeline does not find it either)")
            detail.append(f"| {n} | {kind} | {a:.2f}-{b:.2f} | {b - a:.1f} | {got or missed} |")
    return "\n".join(
        [
            "# Event boundaries (issue 14)",
            "",
            f"`python bench/bench_boundaries.py`: {s['events']} synthetic events (beep, chirp, clicks;"
            f" 1.5-20 s) in {len(outcomes)} files of 2-5 minutes ({seconds / 60:.0f} min of audio) between"
            " hum, noise and silence, through the real monitor with the **tiny test model** (10 s windows,"
            " 2 s hop, one window over 0.7 opens an event). **Tiny-model synthetic results: they check the"
            " method, they are not accuracy on real sounds.**",
            "",
            f"CPU: {cpu}, one model thread. Load before: `{before}`; after: `{after}`.",
            "",
            *rows,
            "",
            f"- events matched: {s['matched']} of {s['events']}; missed although `classify --timeline`"
            f" finds them: {s['missed']}; events `classify --timeline` does not find: {s['not_found_by_classify']}",
            f"- events split in two or more: {s['split']}; monitor events in all: {s['monitor_events']}"
            f" (refined starts {s['refined_starts']}, refined ends {s['refined_ends']})",
            f"- cost: monitoring with refinement took {ratio:.2f}x the time without (same files, one run;"
            " the machine was shared, so only this ratio is meaningful)",
            "",
            "| file | sound | truth (s) | length (s) | monitor event(s): refined (coarse) |",
            "|---|---|---|---|---|",
            *detail,
            "",
        ]
    )


if __name__ == "__main__":
    main()
