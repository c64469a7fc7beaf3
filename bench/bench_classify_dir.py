"""`earmark classify DIR` against `earmark tag` on the same folder, in one run (issue 12).

    python bench/bench_classify_dir.py               # 200 ten-second mp3 files
    python bench/bench_classify_dir.py --files 50    # quicker
    python bench/bench_classify_dir.py --rounds 2    # two rounds, alternating who goes first

Both go through the one stage (decoding threads ahead of the model, fixed-shape
batches); target: classify within 10 % of tag in files/s. Each side runs in its
own child process (its own model load, not counted), alternating, on the
full-size random-weight clap-htsat-fused (``bench/fullsize.py``; scores mean
nothing and are not reported) with the same backend and threads. Prints a
Markdown table with the machine and load average; ratios measured in one run
are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

LABELS = ("nature", "city", "indoor", "machine", "voice")


def child(mode: str, folder: str, model: str, threads: int, backend: str) -> None:
    """In a child process: load the model, then classify or tag every file; print timings as JSON."""
    from earmark import Classifier
    from earmark.cli.classify_cmd import expand_inputs
    from earmark.errors import AudioError
    from earmark.library import FileTagged, TagOptions, tag_paths
    from earmark.store import Database

    clf = Classifier(model, threads=threads, backend=backend)
    clf.text_embeddings(LABELS, clf.options.templates)  # labels are embedded before timing, on both sides
    start = time.perf_counter()
    n = failed = 0
    if mode == "classify":  # what `earmark classify DIR` runs (cli/classify_cmd.py), without the printing
        for result in clf.classify_many(list(expand_inputs((folder,))), LABELS):
            n += 1
            failed += isinstance(result, AudioError)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(Path(tmp) / "lib.db")
            for ev in tag_paths(db, [folder], TagOptions(labels=LABELS), clf):
                if isinstance(ev, FileTagged):
                    n += 1
                    failed += ev.status == "error"
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"mode": mode, "files": n, "failed": failed, "seconds": seconds, "files_per_s": n / seconds}
        )
    )


def run(
    mode: str, folder: Path, model: str, threads: int, backend: str, src: Path = ROOT / "src"
) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    args = [sys.executable, __file__, "--child", mode, str(folder), model, str(threads), backend]
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="torch", help="the same for both sides (default: torch, no export)")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also run `classify` from another checkout's src/ (e.g. before this change), in the same rounds",
    )
    ap.add_argument("--child", nargs=5, metavar=("MODE", "FOLDER", "MODEL", "THREADS", "BACKEND"))
    a = ap.parse_args()
    if a.child:
        mode, folder, model, threads, backend = a.child
        child(mode, folder, model, int(threads), backend)
        return
    from bench_tag import fullsize_model, make_mp3s
    from host import cpu_name, uptime

    model = str(fullsize_model())
    paths = make_mp3s(OUT / "tag-mp3", max(a.files, 1))[: a.files]
    folder = OUT / f"classify-dir-{a.files}"
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        if not (folder / p.name).exists():
            os.link(p, folder / p.name)
    load_before = uptime()
    results: dict[str, list[dict[str, float]]] = {"classify": [], "tag": []}
    modes = ["classify", "tag"]
    if a.baseline_src:
        results["classify (baseline)"] = []
        modes.append("classify (baseline)")
    for i in range(a.rounds):
        # alternate which goes first: the machine's load and the page cache drift during a run
        for mode in modes if i % 2 == 0 else modes[::-1]:
            if mode == "classify (baseline)":
                r = run("classify", folder, model, a.threads, a.backend, a.baseline_src)
            else:
                r = run(mode, folder, model, a.threads, a.backend)
            results[mode].append(r)
    load_after = uptime()
    rate = {m: sum(r["files_per_s"] for r in rs) / len(rs) for m, rs in results.items()}
    print(f"# classify DIR vs tag: {a.files} ten-second mp3 files, {a.backend}, {a.threads} threads\n")
    print(f"- CPU: {cpu_name()}; load before: `{load_before}`; after: `{load_after}`")
    print(f"- rounds: {a.rounds} (classify and tag alternating who goes first, each in its own process;")
    print("  model load and label embedding not counted)\n")
    print("| command | files/s (mean) | runs (files/s) |\n|---|---|---|")
    for m, rs in results.items():
        runs = ", ".join(f"{r['files_per_s']:.2f}" for r in rs)
        name = f"`earmark {m.split()[0]}`" + (f" from {a.baseline_src}" if "baseline" in m else "")
        print(f"| {name} | {rate[m]:.2f} | {runs} |")
    print(f"\nclassify / tag = **{rate['classify'] / rate['tag']:.2f}** (target: at least 0.90)")


if __name__ == "__main__":
    main()
