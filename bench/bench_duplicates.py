"""Duplicates and search at scale (issue 19): fingerprint cost during tag, duplicates over synthetic
fingerprints, short sounds matched by embedding, search latency and memory at 100 000 and 1 000 000
windows (float16, 512-d).

    python bench/bench_duplicates.py [--threads 2] [--files 12] [--prints 10000 100000]
        [--windows 100000 1000000] [--skip tag,dups,search]

Each search case runs in its own process (``--child-search``) so its RSS is its own. Results go to
bench/out/duplicates.json and are summarised in bench/RESULTS.md. The full-size model has random weights
(bench/fullsize.py): its speed is real, its scores mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from host import cpu_name, uptime  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    """VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- 1. fingerprinting during tag vs the model ---------------------------------------------------------


def bench_tag(n: int, threads: int) -> dict[str, object]:
    """One tag run of ``n`` ten-second mp3 files with the full-size model; fpcalc timed inside it."""
    from bench_tag import fullsize_model, make_mp3s

    from earmark.classify import Classifier
    from earmark.library import ModelRef, TagOptions, fingerprints, tag_paths
    from earmark.store import Database

    paths = make_mp3s(OUT / "tag-mp3", n)[:n]
    spent: list[tuple[float, float]] = []  # (wall, child cpu) per fpcalc
    compute = fingerprints.compute

    def timed(path: str) -> fingerprints.Fingerprint | None:
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        fp = compute(path)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append((time.perf_counter() - t0, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)))
        return fp

    fingerprints.compute = timed  # type: ignore[assignment]
    clf = Classifier(str(fullsize_model()), threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for p in paths:
            os.link(p, folder / p.name)
        db = Database(Path(tmp) / "lib.db")
        t = time.perf_counter()
        list(tag_paths(db, [folder], TagOptions(labels=("rain", "engine", "voice")), ModelRef.of(clf)))
        tag_s = time.perf_counter() - t
    fingerprints.compute = compute  # type: ignore[assignment]
    t = time.perf_counter()
    for p in paths[:4]:
        clf.embed(str(p))
    model_ms = (time.perf_counter() - t) / 4 * 1e3
    walls, cpus = [w * 1e3 for w, _ in spent], [c * 1e3 for _, c in spent]
    return {
        "files": n,
        "tag_ms_per_file": tag_s / n * 1e3,
        "fpcalc_wall_ms_median": statistics.median(walls),
        "fpcalc_cpu_ms_median": statistics.median(cpus),
        "model_embed_ms_per_file": model_ms,
        "fpcalc_cpu_share_of_model": statistics.median(cpus) / model_ms,
    }


# -- 2. duplicates over synthetic fingerprints ---------------------------------------------------------


def synthetic_prints(
    n: int, seed: int = 0, items: int = 240
) -> tuple[list[np.ndarray], set[tuple[int, int]]]:
    """``n`` fingerprints: 80 % originals, 20 % copies of one of them (3 % of bits flipped, 0-4 items
    trimmed). Items drift a few bits at a time and some bits are biased, like Chromaprint's."""
    rng = np.random.default_rng(seed)
    n_orig = int(n * 0.8)
    bias = rng.beta(0.6, 0.6, 32)  # per-bit chance of a 1: many bits nearly fixed
    weights = np.uint32(1) << np.arange(32, dtype=np.uint32)
    state = rng.random((n_orig, 32)) < bias
    out = np.empty((n_orig, items), np.uint32)
    for t in range(items):  # each step redraws ~12 % of the bits: neighbouring items share most bits
        flip = rng.random((n_orig, 32)) < 0.12
        state = np.where(flip, rng.random((n_orig, 32)) < bias, state)
        out[:, t] = (state.astype(np.uint64) * weights).sum(axis=1).astype(np.uint32)
    prints = list(out)
    truth = set()
    for j in range(n - n_orig):
        src = int(rng.integers(0, n_orig))
        noise = (rng.random((items, 32)) < 0.03).astype(np.uint32)
        copy = prints[src] ^ (noise * weights).sum(axis=1, dtype=np.uint64).astype(np.uint32)
        prints.append(copy[int(rng.integers(0, 5)) :])
        truth.add((src, n_orig + j))
    return prints, truth


def bench_dups(n: int) -> dict[str, object]:
    from earmark.library import fingerprints
    from earmark.library.print_index import candidate_pairs

    t = time.perf_counter()
    prints, truth = synthetic_prints(n)
    gen_s = time.perf_counter() - t
    base = rss_mb()
    t = time.perf_counter()
    pairs = candidate_pairs(prints)
    index_s = time.perf_counter() - t
    t = time.perf_counter()
    shares, _ = fingerprints.similarities(prints, pairs)
    verify_s = time.perf_counter() - t
    found = {tuple(p) for p, s in zip(pairs.tolist(), shares, strict=True) if s >= 0.7}
    # copies of the same original are duplicates of each other too: count only original-copy truth
    hits = len(truth & found)
    return {
        "fingerprints": n,
        "items_each": 240,
        "generate_s": gen_s,
        "index_s": index_s,
        "verify_s": verify_s,
        "candidates": len(pairs),
        "all_pairs": n * (n - 1) // 2,
        "true_pairs": len(truth),
        "recall": hits / max(1, len(truth)),
        "false_matches": len({(a, b) for a, b in found if a < int(n * 0.8) and b < int(n * 0.8)}),
        "extra_rss_mb": rss_mb() - base,
    }


def bench_short(n: int, dim: int = 512) -> dict[str, object]:
    """Short sounds (no fingerprint) matched by embedding: ``n`` first windows of 40 kinds (cosine ~0.9
    within a kind), 20 % of them copies (cosine 0.995 to their original, duration +-0.05 s)."""
    from earmark.library.embed_pairs import near_pairs

    rng = np.random.default_rng(1)
    n_orig = int(n * 0.8)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def near(base: np.ndarray, cos: float) -> np.ndarray:
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise -= np.sum(noise * base, axis=1, keepdims=True) * base
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        return cos * base + np.sqrt(1 - cos**2) * noise

    orig = near(centres[rng.integers(0, 40, n_orig)], 0.9)
    src = rng.integers(0, n_orig, n - n_orig)
    first = np.concatenate([orig, near(orig[src], 0.995)]).astype(np.float16)
    durations = rng.uniform(0.1, 3.0, n_orig)
    durations = np.concatenate([durations, durations[src] + rng.uniform(-0.05, 0.05, n - n_orig)])
    truth = {(int(a), n_orig + j) for j, a in enumerate(src)}
    base = rss_mb()
    t = time.perf_counter()
    pairs, _ = near_pairs(first, np.ones(n, np.int64), durations, min_cos=0.99, tolerance_s=0.6)
    took, extra = time.perf_counter() - t, rss_mb() - base
    found = {(int(a), int(b)) for a, b in pairs.tolist()}
    ordered = np.sort(durations)  # what a sweep over similar durations would compare
    band = int((np.searchsorted(ordered, ordered + 0.6, side="right") - np.arange(n) - 1).sum())
    return {
        "short_sounds": n,
        "dim": dim,
        "seconds": took,
        "pairs_found": len(found),
        "true_pairs": len(truth),
        "recall": len(truth & found) / max(1, len(truth)),
        "pairs_within_0.6_s": band,
        "extra_rss_mb": extra,
    }


# -- 3. search at 100 000 and 1 000 000 windows --------------------------------------------------------


def child_search(method: str, windows: int, threads: int) -> dict[str, object]:
    import torch

    torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    from earmark.library.search import WindowIndex, _storage

    dim, per_file = 512, 5
    rng = np.random.default_rng(0)
    before = rss_mb()
    chosen = method == "earmark index (faiss fp16 codes)"
    matrix, faiss_index = _storage(windows, dim) if chosen else (np.empty((windows, dim), np.float16), None)
    for lo in range(0, windows, 50_000):  # block by block: no float32 copy of the whole matrix
        block = rng.standard_normal((min(50_000, windows - lo), dim), dtype=np.float32)
        matrix[lo : lo + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    files = windows // per_file
    offsets = np.arange(files, dtype=np.int64) * per_file
    spans = np.zeros((windows, 2), np.float32)
    queries = rng.standard_normal((30, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    if method in ("earmark index (faiss fp16 codes)", "earmark index (torch fp16; no faiss)"):
        index = WindowIndex(np.arange(files), offsets, spans, matrix, [str(i) for i in range(files)])
        index.faiss_index = faiss_index

        def query(q: np.ndarray) -> object:
            return index.query(q, 20)
    elif method == "numpy-fp16-blocks":

        def query(q: np.ndarray) -> object:
            out = np.empty(windows, np.float32)
            for lo in range(0, windows, 16384):
                out[lo : lo + 16384] = matrix[lo : lo + 16384].astype(np.float32) @ q
            per = np.maximum.reduceat(out, offsets)
            return np.argpartition(-per, 20)[:20]
    elif method == "on-disk fp16 (memmap; torch blocks)":
        import atexit
        import shutil

        folder = tempfile.mkdtemp()
        atexit.register(shutil.rmtree, folder, True)
        path = Path(folder) / "windows.npy"
        disk = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=matrix.shape)
        disk[:] = matrix
        disk.flush()
        del disk, matrix
        import torch

        mapped = np.load(
            path, mmap_mode="c"
        )  # copy-on-write: never written; pages come from the OS cache (warm after the first query)

        def query(q: np.ndarray) -> object:
            qt = torch.from_numpy(q.astype(np.float16))
            out = np.empty(windows, np.float32)
            for lo in range(0, windows, 131072):
                block = torch.from_numpy(np.asarray(mapped[lo : lo + 131072]))
                out[lo : lo + len(block)] = (block @ qt).float().numpy()
            per = np.maximum.reduceat(out, offsets)
            return np.argpartition(-per, 20)[:20]
    elif method == "numpy-fp32":
        m32 = matrix.astype(np.float32)
        del matrix

        def query(q: np.ndarray) -> object:
            per = np.maximum.reduceat(m32 @ q, offsets)
            return np.argpartition(-per, 20)[:20]
    elif method.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(threads)
        kind = faiss.ScalarQuantizer.QT_fp16 if method == "faiss-sq-fp16" else faiss.ScalarQuantizer.QT_8bit
        idx = faiss.IndexScalarQuantizer(dim, kind, faiss.METRIC_INNER_PRODUCT)
        idx.train(matrix[:20_000].astype(np.float32))
        for lo in range(0, windows, 50_000):
            idx.add(matrix[lo : lo + 50_000].astype(np.float32))
        del matrix

        def query(q: np.ndarray) -> object:
            return idx.search(q[None, :], 200)
    else:
        raise SystemExit(f"unknown method {method}")
    built = rss_mb()
    query(queries[0])
    times = []
    cpu = []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        query(q)
        times.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
        if len(times) >= 5 and sum(times) > 20_000:
            break  # a slow option: five queries tell enough
    return {
        "method": method,
        "windows": windows,
        "queries": len(times),
        "median_ms": statistics.median(times),
        "p95_ms": float(np.percentile(times, 95)),
        "cpu_ms_median": statistics.median(cpu),  # all threads: less sensitive to other load than wall time
        "index_rss_mb": built - before,  # includes freed generator blocks the allocator kept
        "matrix_mb": windows * dim * 2 / 2**20,
        "peak_rss_mb": peak_mb(),
    }


def bench_search(windows: int, threads: int, methods: list[str]) -> list[dict[str, object]]:
    out = []
    for method in methods:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
        run = subprocess.run(
            [sys.executable, __file__, "--child-search", method, str(windows), str(threads)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            out.append({"method": method, "windows": windows, "error": run.stderr.strip().splitlines()[-1:]})
        else:
            out.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(json.dumps(out[-1]), flush=True)
    return out


def sqlite_vec_loadable() -> str:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    if not hasattr(conn, "enable_load_extension"):
        return "no: this Python's sqlite3 has no enable_load_extension"
    try:
        import sqlite_vec

        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        return "yes"
    except (ImportError, sqlite3.Error) as ex:
        return f"no: {ex}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--prints", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--windows", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument(
        "--methods",
        default="earmark index (faiss fp16 codes),earmark index (torch fp16; no faiss),on-disk fp16 (memmap; torch blocks),numpy-fp16-blocks,numpy-fp32,faiss-sq8",
    )
    ap.add_argument("--skip", default="")
    ap.add_argument("--out", default="duplicates.json", help="file name under bench/out")
    ap.add_argument("--child-search", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_search:
        method, windows, threads = args.child_search
        print(json.dumps(child_search(method, int(windows), int(threads))))
        return
    skip = set(args.skip.split(","))
    result: dict[str, object] = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_before": uptime()}
    if "tag" not in skip:
        result["tag"] = bench_tag(args.files, args.threads)
        print(json.dumps(result["tag"]), flush=True)
    if "dups" not in skip:
        result["duplicates"] = [bench_dups(n) for n in args.prints]
        print(json.dumps(result["duplicates"]), flush=True)
        result["short_sounds"] = [bench_short(n) for n in args.prints]
        print(json.dumps(result["short_sounds"]), flush=True)
    if "search" not in skip:
        methods = args.methods.split(",")
        result["search"] = [r for w in args.windows for r in bench_search(w, args.threads, methods)]
        result["sqlite_vec"] = sqlite_vec_loadable()
    result["load_after"] = uptime()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
