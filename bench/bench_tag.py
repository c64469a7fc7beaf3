"""Library benchmarks: tagging throughput and search latency (not collected by pytest).

    python bench/bench_tag.py                 # both, 1000 files, 100 000 windows
    python bench/bench_tag.py --files 200     # a quicker tagging run
    python bench/bench_tag.py --only search

Tagging: 1000 ten-second mp3 files (generated once under bench/out/tag-mp3)
tagged with the full-size random-weight clap-htsat-fused on 2 threads, in a
child process so its peak RSS is its own. Also times the parts (decode,
features, model) to say what bounds the rate. Search: 100 000 stored windows
of 512 dims: numpy brute force (what earmark uses) against faiss IndexFlatIP
and sqlite-vec when they can be imported (``pip install --target
bench/out/vendor faiss-cpu sqlite-vec``; they are not earmark dependencies).
Scores of the random model mean nothing and are not reported.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "src"))
sys.path.append(str(OUT / "vendor"))  # after the venv, so its numpy wins

import numpy as np  # noqa: E402

LABELS = ("nature", "city", "indoor", "machine", "voice")


def fullsize_model() -> Path:
    for cand in (OUT / "clap-htsat-fused-random", Path("/work/main/bench/out/clap-htsat-fused-random")):
        if (cand / "model.safetensors").is_file():
            return cand
    sys.path.insert(0, str(ROOT / "bench"))
    from fullsize import build_fullsize

    return build_fullsize()


def make_mp3s(folder: Path, n: int) -> list[Path]:
    """n ten-second mp3 files of the synthetic sounds (made once, reused)."""
    from earmark import synth

    folder.mkdir(parents=True, exist_ok=True)
    kinds = list(synth.SOUNDS)
    paths = [folder / f"{kinds[i % len(kinds)]}-{i:04d}.mp3" for i in range(n)]
    todo = [(i, p) for i, p in enumerate(paths) if not p.is_file()]

    def encode(group: list[tuple[int, Path]]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
            outs: list[str] = []
            for j, (i, p) in enumerate(group):
                raw = Path(tmp) / f"{i}.f32"
                raw.write_bytes(synth.make(kinds[i % len(kinds)], 10.0, seed=i).tobytes())
                cmd += ["-f", "f32le", "-ar", "48000", "-ac", "1", "-i", str(raw)]
                outs += ["-map", f"{j}:a", "-c:a", "libmp3lame", "-b:a", "128k", str(p) + ".tmp.mp3"]
            subprocess.run(cmd + outs, check=True)
            for _, p in group:
                os.replace(str(p) + ".tmp.mp3", p)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(encode, [todo[i : i + 20] for i in range(0, len(todo), 20)]))
    return paths


def child_tag(folder: str, db_path: str, model: str, threads: int) -> None:
    """Runs in a child process: load, tag the folder, print timings as JSON."""
    from earmark import Classifier
    from earmark.library import FileTagged, TagOptions, tag_paths
    from earmark.store import Database

    t0 = time.perf_counter()
    clf = Classifier(model, threads=threads)
    t_load = time.perf_counter()
    first = None
    n = 0
    for ev in tag_paths(Database(db_path), [folder], TagOptions(labels=LABELS), clf):
        if isinstance(ev, FileTagged):
            n += 1
            first = first or time.perf_counter()
    t_end = time.perf_counter()
    print(
        json.dumps(
            {
                "files": n,
                "load_s": t_load - t0,
                "tag_s": t_end - t_load,
                "files_per_s": n / (t_end - t_load),
                "steady_files_per_s": (n - 1) / (t_end - first),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def parts(paths: list[Path], model: str, threads: int) -> dict[str, float]:
    """Per-file cost of decoding, feature extraction and the model, measured apart."""
    from earmark import Classifier
    from earmark.audio import decode

    clf = Classifier(model, threads=threads)
    sample = paths[:20]
    t = time.perf_counter()
    audio = [decode(p, sample_rate=48000) for p in sample]
    decode_ms = (time.perf_counter() - t) / len(sample) * 1e3
    t = time.perf_counter()
    feats = np.stack([clf.backend.features(a[:480000]) for a in audio])  # type: ignore[attr-defined]
    feat_ms = (time.perf_counter() - t) / len(sample) * 1e3
    clf.backend.embed_features(feats[:2])  # type: ignore[attr-defined]
    t = time.perf_counter()
    clf.backend.embed_features(feats)  # type: ignore[attr-defined]
    model_ms = (time.perf_counter() - t) / len(sample) * 1e3
    return {"decode_ms": decode_ms, "features_ms": feat_ms, "model_ms": model_ms}


def bench_tag(n: int, threads: int) -> dict[str, object]:
    model = str(fullsize_model())
    t = time.perf_counter()
    paths = make_mp3s(OUT / "tag-mp3", 1000)[:n]
    gen_s = time.perf_counter() - t
    folder = OUT / f"tag-mp3-{n}"
    if n < 1000:
        folder.mkdir(exist_ok=True)
        for p in paths:
            if not (folder / p.name).exists():
                os.link(p, folder / p.name)
    else:
        folder = OUT / "tag-mp3"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run(
            [sys.executable, __file__, "--child-tag", str(folder), f"{tmp}/db", model, str(threads)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result.update(parts(paths, model, threads), generate_s=gen_s)
    return result


def fake_db(path: Path, windows: int, dim: int = 512, per_file: int = 5) -> None:
    """A library database with ``windows`` random unit vectors, ``per_file`` windows per file."""
    from earmark.library.schema import migrate
    from earmark.store import Database

    db = migrate(Database(path))
    rng = np.random.default_rng(0)
    with db.transaction() as c:
        for i in range(windows // per_file):
            v = rng.standard_normal((per_file, dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            spans = np.array([[k * 5.0, k * 5.0 + 10] for k in range(per_file)], np.float32)
            e = c.execute(
                "INSERT INTO lib_embeddings (content_hash, model, window_s, hop_s, preprocess, duration_s,"
                " sample_rate, n_windows, dim, spans, vectors) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    f"h{i}",
                    "m",
                    10.0,
                    5.0,
                    "none",
                    30.0,
                    48000,
                    per_file,
                    dim,
                    spans.tobytes(),
                    v.astype(np.float16).tobytes(),
                ),
            ).lastrowid
            c.execute(
                "INSERT INTO lib_files (path, size, mtime_ns, content_hash, embedding_id, status, top_label,"
                " top_score) VALUES (?,?,?,?,?,?,?,?)",
                (f"/lib/{i}.wav", 1, 0, f"h{i}", e, "auto", "x", 0.9),
            )
    db.close()


def _timed(fn: object, queries: np.ndarray) -> dict[str, float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95))}


def bench_search(windows: int, threads: int) -> dict[str, object]:
    from earmark.library.search import WindowIndex
    from earmark.store import Database

    path = OUT / f"search-{windows}.db"
    if not path.exists():
        fake_db(path, windows)
    db = Database(path)
    t = time.perf_counter()
    index = WindowIndex.load(db, "m")
    result: dict[str, object] = {
        "windows": len(index),
        "load_s": time.perf_counter() - t,
        "index_mb": index.matrix.nbytes / 2**20,
    }
    queries = np.random.default_rng(1).standard_normal((50, index.matrix.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    result["numpy"] = _timed(lambda q: index.query(q, 20), queries)
    result.update(_alternatives(index, queries, threads))
    return result


def _alternatives(index: object, queries: np.ndarray, threads: int) -> dict[str, object]:
    out: dict[str, object] = {}
    matrix = index.matrix  # type: ignore[attr-defined]
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
        flat = faiss.IndexFlatIP(matrix.shape[1])
        flat.add(matrix)
        out["faiss_flat"] = _timed(lambda q: flat.search(q[None, :], 100), queries)
    except ImportError:
        out["faiss_flat"] = "not installed"
    try:
        import sqlite3

        import sqlite_vec

        conn = sqlite3.connect(":memory:")
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(e float[{matrix.shape[1]}] distance_metric=cosine)")
        conn.executemany(
            "INSERT INTO v(rowid, e) VALUES (?, ?)", ((i, r.tobytes()) for i, r in enumerate(matrix))
        )
        sql = "SELECT rowid, distance FROM v WHERE e MATCH ? AND k = 100"
        out["sqlite_vec"] = _timed(lambda q: conn.execute(sql, (q.tobytes(),)).fetchall(), queries[:10])
    except (ImportError, AttributeError) as ex:
        out["sqlite_vec"] = f"not usable ({ex})"
    return out


def bench_text_query(threads: int, windows: int) -> dict[str, float]:
    """The whole ``search_text`` path with the full-size model: a new query's text embedding + index."""
    from earmark import Classifier
    from earmark.library.search import WindowIndex, search_text
    from earmark.store import Database

    clf = Classifier(str(fullsize_model()), threads=threads)
    index = WindowIndex.load(Database(OUT / f"search-{windows}.db"), "m")
    from earmark.library import search

    search.index_for = lambda db, model: index  # the fake database's vectors stand for this model's
    words = [
        "glass breaking",
        "dog barking",
        "rain on a roof",
        "door slam",
        "engine idling",
        "crowd cheering",
    ]
    times = []
    for w in words:
        t = time.perf_counter()
        search_text(Database(OUT / f"search-{windows}.db"), clf, w, k=20)
        times.append((time.perf_counter() - t) * 1e3)
    return {"new_query_median_ms": statistics.median(times), "new_query_max_ms": max(times)}


def machine() -> dict[str, object]:
    from host import cpu_name, uptime

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "uptime": uptime()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--windows", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["tag", "search"], default=None)
    ap.add_argument("--child-tag", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_tag:
        child_tag(args.child_tag[0], args.child_tag[1], args.child_tag[2], int(args.child_tag[3]))
        return
    results: dict[str, object] = {"before": machine()}
    if args.only in (None, "search"):
        results["search"] = bench_search(args.windows, args.threads)
        results["text_query"] = bench_text_query(args.threads, args.windows)
    if args.only in (None, "tag"):
        results["tag"] = bench_tag(args.files, args.threads)
    results["after"] = machine()
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_tag.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
