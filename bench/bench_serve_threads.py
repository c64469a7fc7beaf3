"""Which model thread count should `earmark serve` default to? Interleaved rounds, one run.

    PYTHONPATH=src python bench/bench_serve_threads.py [--backend openvino] [--threads 1,2] [--rounds 2]

``earmark serve`` leaves cores to its decode worker processes. This serves the
full-size random-weight model (``bench/fullsize.py``, prepared in ``bench/out/home``)
with the page on at each ``--threads`` count in turn, ``--rounds`` times interleaved
(1, 2, 1, 2, ...: load that comes and goes hits every count alike), and prints
requests/s and p99 at concurrency 1 and 16 per round, the medians per count, and
each count's throughput as a ratio to the first count's (ratios from one run are
comparable under load; absolute figures are not). Uses
:func:`bench_perf.serve_row`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE)]

from bench_perf import serve_row  # noqa: E402
from host import cpu_name, uptime  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--serve-seconds", type=float, default=12.0)
    args = ap.parse_args()
    if args.model is None:
        from fullsize import build_fullsize

        args.model = build_fullsize()
    counts = [int(t) for t in args.threads.split(",")]
    before = uptime()
    runs: dict[int, list[dict[str, Any]]] = {t: [] for t in counts}
    for r in range(args.rounds):
        for t in counts if r % 2 == 0 else counts[::-1]:
            row = serve_row(args, args.backend, t)
            runs[t].append(row)
            print(f"round {r + 1} threads {t}: {row}", file=sys.stderr, flush=True)
    after = uptime()
    print(f"### `earmark serve --backend {args.backend}`: model threads, {cpu_name()}\n")
    print(f"Load before: `{before}`; after: `{after}`. {args.rounds} interleaved rounds; medians.\n")
    print(
        "| threads | c=1 req/s | c=1 p99 ms | c=16 req/s | c=16 p99 ms | c=16 vs first | peak MiB | start s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    keys = ("c1_rps", "c1_p99_ms", "c16_rps", "c16_p99_ms", "peak_mib", "start_s")
    base = statistics.median(float(x["c16_rps"]) for x in runs[counts[0]])
    for t in counts:
        med = {k: statistics.median(float(x[k]) for x in runs[t]) for k in keys}
        print(
            f"| {t} | {med['c1_rps']:.2f} | {med['c1_p99_ms']:.0f} | {med['c16_rps']:.2f} | {med['c16_p99_ms']:.0f}"
            f" | {med['c16_rps'] / base:.2f}x | {med['peak_mib']:.0f} | {med['start_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
