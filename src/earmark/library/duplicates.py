"""``earmark duplicates``: groups of library files that are the same recording, whatever the format.

Three kinds of evidence, strongest first:

- *identical bytes*: the same content hash (a plain copy);
- *fingerprint*: Chromaprint fingerprints (:mod:`.fingerprints`, stored by
  ``tag``) that agree at some alignment; candidates come from an inverted index
  (:mod:`.print_index`), never from all pairs. Catches transcodes (wav, mp3,
  ogg at another rate, mono) and small trims. Misses sounds shorter than about
  4 s and steady sounds (a hum, a constant tone) whose fingerprint says nothing;
- *embedding*: for files too short to fingerprint only (a long file without a
  fingerprint, e.g. tagged without ``fpcalc``, is not matched at all), the stored CLAP window
  embeddings agree window by window (cosine at least
  ``min_embedding_similarity``) and the durations match. Embeddings describe
  what a sound *is*, not which recording it is, so this is a weaker match:
  two takes of the same kind of click can pass it. Candidates come from
  random-hyperplane hashing of the first windows (:mod:`.embed_pairs`), never
  from all pairs: a library of 100 000 one-shots stays linear.

For every fingerprint match the CLAP embedding cosine is reported too, as
confirmation. Files linked by any evidence form a group (connected
components); each group names a keeper, the best-quality file: lossless over
lossy, then higher sample rate, then higher bitrate, then longer.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..store import Database
from . import fingerprints
from .embed_pairs import near_pairs
from .print_index import QUERY_ITEMS, candidate_pairs
from .schema import migrate

__all__ = [
    "DuplicateFile",
    "DuplicateGroup",
    "DuplicateOptions",
    "DuplicateReport",
    "Evidence",
    "bitrate_kbps",
    "cached_duplicates",
    "find_duplicates",
    "is_lossless",
]

_LOSSLESS = {"flac", "alac", "wavpack", "ape", "tta", "mlp", "truehd", "mp4als", "shorten", "tak"}
_PCM_BITS = re.compile(r"pcm_[suf](\d+)")  # FFmpeg's PCM codec names: pcm_s16le, pcm_s24be, pcm_f32le
_ITEM_S = 4096 / 3 / 11025  # Chromaprint: one item per 1365.33 samples at 11025 Hz


@dataclass(frozen=True, kw_only=True)
class DuplicateOptions:
    """How sure a match must be.

    Attributes:
        min_similarity: share of aligned fingerprint items that must agree (same
            recording: 0.85-1.0 after mp3/ogg/resampling/trims; unrelated audio: below 0.6).
        min_embedding_similarity: window-by-window CLAP cosine for files too short
            to fingerprint (and only those).
        duration_tolerance_s: how far the durations of an embedding-only match may differ.
    """

    min_similarity: float = 0.7
    min_embedding_similarity: float = 0.99
    duration_tolerance_s: float = 0.6


@dataclass(frozen=True, kw_only=True)
class DuplicateFile:
    """One file of a group, with what the keeper choice looked at."""

    file_id: int
    path: str
    duration_s: float | None
    format: str | None
    codec: str | None
    sample_rate: int | None
    channels: int | None
    size: int
    bitrate_kbps: float | None
    lossless: bool
    keeper: bool = False

    def rank(self) -> tuple[Any, ...]:
        """Higher is better: lossless, sample rate, bitrate, duration (then the older file)."""
        return (
            self.lossless,
            self.sample_rate or 0,
            round(self.bitrate_kbps or 0.0),
            round(self.duration_s or 0.0, 1),
            self.channels or 0,
            -self.file_id,
        )


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """Why two files are in one group.

    Attributes:
        kind: ``identical bytes``, ``fingerprint`` or ``embedding``.
        similarity: 1.0 for identical bytes; share of agreeing fingerprint
            items; or the lowest window cosine for an embedding match.
        offset_s: where ``b`` starts in ``a`` (fingerprint matches; a trim shows here).
        embedding_cosine: cosine of the two files' mean CLAP embeddings, when both have one.
    """

    a: int
    b: int
    kind: str
    similarity: float
    offset_s: float | None = None
    embedding_cosine: float | None = None


@dataclass(frozen=True, kw_only=True)
class DuplicateGroup:
    """Files that are the same recording; ``files[0]`` is the keeper."""

    files: tuple[DuplicateFile, ...]
    evidence: tuple[Evidence, ...]

    @property
    def keeper(self) -> DuplicateFile:
        return self.files[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "keeper": self.keeper.file_id,
            "files": [asdict(f) for f in self.files],
            "evidence": [
                {
                    **asdict(e),
                    "similarity": round(e.similarity, 4),
                    "offset_s": None if e.offset_s is None else round(e.offset_s, 2),
                    "embedding_cosine": None if e.embedding_cosine is None else round(e.embedding_cosine, 4),
                }
                for e in self.evidence
            ],
        }


@dataclass(frozen=True, kw_only=True)
class DuplicateReport:
    """All groups, plus how much of the library could be checked.

    Attributes:
        groups: largest first, then by keeper path.
        files: library files looked at.
        fingerprinted: files with a usable fingerprint.
        without_fingerprint: files with none (too short, unreadable, or tagged before
            fingerprints or without ``fpcalc``: re-run ``earmark tag`` to add them).
        candidates: fingerprint pairs the index proposed (each checked exactly).
    """

    groups: tuple[DuplicateGroup, ...]
    files: int
    fingerprinted: int
    without_fingerprint: int
    candidates: int
    fpcalc: bool = field(default_factory=fingerprints.available)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "files": self.files,
            "fingerprinted": self.fingerprinted,
            "without_fingerprint": self.without_fingerprint,
            "candidates": self.candidates,
            "fpcalc": self.fpcalc,
        }


def is_lossless(codec: str | None, fmt: str | None) -> bool:
    """PCM (wav, aiff), FLAC, ALAC, WavPack and friends."""
    name = (codec or "").lower()
    if name.startswith("pcm_") or name in _LOSSLESS:
        return True
    return not name and (fmt or "").lower() in {"wav", "aiff", "flac", "w64"}


class _Groups:
    """Union-find over file ids."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = self.parent.setdefault(x, x)
        while root != self.parent[root]:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(
    db: Database, options: DuplicateOptions | None = None, *, file_ids: Iterable[int] | None = None
) -> DuplicateReport:
    """Group the library's files that are the same recording.

    Args:
        db: the library database.
        options: thresholds.
        file_ids: look only at these files (default: the whole library).
    """
    options = options or DuplicateOptions()
    migrate(db)
    conn = db.conn
    files = _files(conn, file_ids)
    by_hash: dict[str, list[int]] = {}
    for f in files.values():
        by_hash.setdefault(f["content_hash"], []).append(f["id"])
    groups = _Groups()
    edges: list[Evidence] = []
    for ids in by_hash.values():  # byte-identical copies
        for other in ids[1:]:
            groups.union(ids[0], other)
            edges.append(Evidence(a=ids[0], b=other, kind="identical bytes", similarity=1.0))
    hashes, prints = _prints(conn, list(by_hash))
    pairs = candidate_pairs(prints)
    shares, offsets = fingerprints.similarities(prints, pairs)
    for (i, j), share, offset in zip(pairs, shares, offsets, strict=True):
        if share >= options.min_similarity:
            a, b = by_hash[hashes[i]][0], by_hash[hashes[j]][0]
            groups.union(a, b)
            edges.append(
                Evidence(
                    a=a, b=b, kind="fingerprint", similarity=float(share), offset_s=float(offset) * _ITEM_S
                )
            )
    printed = set(hashes)
    short = _too_short(conn, {h: files[ids[0]] for h, ids in by_hash.items() if h not in printed})
    edges += _embedding_matches(conn, files, [by_hash[h][0] for h in short], options, groups)
    return _report(conn, files, groups, edges, printed, len(pairs))


_cache: dict[tuple[str, DuplicateOptions], tuple[tuple[object, ...], DuplicateReport]] = {}
_cache_lock = threading.Lock()


def _version(conn: sqlite3.Connection) -> tuple[object, ...]:
    """Changes whenever a file's contents, fingerprint or embedding change (not when a file only moves)."""
    return tuple(
        conn.execute(
            "SELECT (SELECT count(*) FROM lib_files), (SELECT max(id) FROM lib_files),"
            " (SELECT max(updated_at) FROM lib_files), (SELECT count(*) FROM lib_fingerprints),"
            " (SELECT max(rowid) FROM lib_fingerprints), (SELECT max(id) FROM lib_embeddings)"
        ).fetchone()
    )


def cached_duplicates(db: Database, options: DuplicateOptions | None = None) -> DuplicateReport:
    """:func:`find_duplicates` of the whole library, reusing the last report while its contents are
    unchanged (the server's endpoint and Library tab: a large library takes minutes). Paths are read
    afresh each time, so files moved by filing or ``undo`` show where they are now."""
    options = options or DuplicateOptions()
    migrate(db)
    key, version = (str(db.path), options), _version(db.conn)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == version:
        fresh = _with_current_paths(db.conn, hit[1])
        if fresh is not None:
            return fresh
    report = find_duplicates(db, options)
    with _cache_lock:
        _cache[key] = (version, report)
    return report


def _with_current_paths(conn: sqlite3.Connection, report: DuplicateReport) -> DuplicateReport | None:
    """The report with each file's current path; None when one of its files is gone."""
    ids = sorted({f.file_id for g in report.groups for f in g.files})
    paths: dict[int, str] = {}
    for lo in range(0, len(ids), 500):
        chunk = ids[lo : lo + 500]
        for row in conn.execute(
            f"SELECT id, path FROM lib_files WHERE id IN ({','.join('?' * len(chunk))})", chunk
        ):
            paths[int(row["id"])] = row["path"]
    if len(paths) != len(ids):
        return None
    groups = [
        replace(g, files=tuple(replace(f, path=paths[f.file_id]) for f in g.files)) for g in report.groups
    ]
    groups.sort(key=lambda g: (-len(g.files), g.keeper.path))
    return replace(report, groups=tuple(groups))


def _too_short(conn: sqlite3.Connection, unprinted: dict[str, sqlite3.Row]) -> list[str]:
    """The contents without a usable fingerprint *because they are short*: only these are matched by
    embeddings. A long file without one (fpcalc missing, unreadable to it, tagged before fingerprints)
    is left out: embeddings alone would join different takes of the same kind of sound."""
    stored = {
        r["content_hash"]: (r["n_items"], r["error"])
        for r in conn.execute(
            "SELECT content_hash, n_items, error FROM lib_fingerprints WHERE n_items<?",
            (fingerprints.MIN_ITEMS,),
        )
    }
    out = []
    for h, f in unprinted.items():
        n_items, error = stored.get(h, (None, None))
        few = n_items is not None and error is None  # fpcalc ran and found too little audio
        if few or (f["duration_s"] is not None and float(f["duration_s"]) < fingerprints.SHORT_S):
            out.append(h)
    return out


def _files(conn: sqlite3.Connection, file_ids: Iterable[int] | None) -> dict[int, sqlite3.Row]:
    rows = conn.execute(
        "SELECT f.id, f.path, f.size, f.content_hash, f.format, f.codec, f.sample_rate, f.channels,"
        " coalesce(f.duration_s, p.duration_s) AS duration_s, f.embedding_id FROM lib_files f"
        " LEFT JOIN lib_fingerprints p ON p.content_hash=f.content_hash ORDER BY f.id"
    ).fetchall()
    wanted = None if file_ids is None else set(file_ids)
    return {r["id"]: r for r in rows if wanted is None or r["id"] in wanted}


def _prints(conn: sqlite3.Connection, hashes: list[str]) -> tuple[list[str], list[np.ndarray]]:
    """The usable fingerprints of these contents, in a stable order.

    Only the items the comparison reads (the first ``VERIFY_ITEMS``, ~30 s) are loaded: 1 KB per file
    instead of up to 4 KB (two minutes), so 100 000 files hold ~100 MB.
    """
    wanted = set(hashes)
    out_h, out_p = [], []
    head = max(fingerprints.VERIFY_ITEMS, QUERY_ITEMS) * 4
    for row in conn.execute(
        "SELECT content_hash, substr(items, 1, ?) AS items FROM lib_fingerprints"
        " WHERE error IS NULL AND n_items>=? ORDER BY content_hash",
        (head, fingerprints.MIN_ITEMS),
    ):
        if row["content_hash"] in wanted:
            out_h.append(row["content_hash"])
            out_p.append(fingerprints.from_blob(row["items"]))
    return out_h, out_p


def _vectors(conn: sqlite3.Connection, embedding_id: int | None) -> tuple[str, np.ndarray] | None:
    """(model, unit window vectors) of a stored embedding, or None."""
    if embedding_id is None:
        return None
    row = conn.execute(
        "SELECT model, n_windows, dim, vectors FROM lib_embeddings WHERE id=? AND vectors IS NOT NULL",
        (embedding_id,),
    ).fetchone()
    if row is None:
        return None
    v = np.frombuffer(row["vectors"], np.float16).reshape(row["n_windows"], row["dim"]).astype(np.float32)
    return row["model"], v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _mean_cosine(a: tuple[str, np.ndarray] | None, b: tuple[str, np.ndarray] | None) -> float | None:
    if a is None or b is None or a[0] != b[0] or a[1].shape[1] != b[1].shape[1]:
        return None
    ma, mb = a[1].mean(axis=0), b[1].mean(axis=0)
    return float(ma @ mb / max(np.linalg.norm(ma) * np.linalg.norm(mb), 1e-12))


def _first_windows(
    conn: sqlite3.Connection, files: dict[int, sqlite3.Row], ids: list[int]
) -> dict[tuple[str, int], tuple[list[int], np.ndarray, np.ndarray, np.ndarray]]:
    """Per (model, dim): file ids, unit first windows (float16), window counts, durations."""
    by_emb: dict[int, list[int]] = {}
    for i in ids:
        if files[i]["duration_s"] is not None and files[i]["embedding_id"]:
            by_emb.setdefault(int(files[i]["embedding_id"]), []).append(i)
    found: dict[tuple[str, int], tuple[list[int], list[np.ndarray], list[int], list[float]]] = {}
    emb_ids = sorted(by_emb)
    for lo in range(0, len(emb_ids), 500):
        chunk = emb_ids[lo : lo + 500]
        for row in conn.execute(
            "SELECT id, model, n_windows, dim, substr(vectors, 1, 2 * dim) AS first FROM lib_embeddings"
            f" WHERE vectors IS NOT NULL AND n_windows > 0 AND id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            v = np.frombuffer(row["first"], np.float16).astype(np.float32)
            v /= max(float(np.linalg.norm(v)), 1e-12)
            group = found.setdefault((row["model"], int(row["dim"])), ([], [], [], []))
            for i in by_emb[int(row["id"])]:
                group[0].append(i)
                group[1].append(v.astype(np.float16))
                group[2].append(int(row["n_windows"]))
                group[3].append(float(files[i]["duration_s"]))
    return {key: (g[0], np.stack(g[1]), np.array(g[2], np.int64), np.array(g[3])) for key, g in found.items()}


def _embedding_matches(
    conn: sqlite3.Connection,
    files: dict[int, sqlite3.Row],
    ids: list[int],
    options: DuplicateOptions,
    groups: _Groups,
) -> list[Evidence]:
    """Files without a fingerprint: the same window count, durations within the tolerance, every window
    pair at ``min_embedding_similarity``. Candidates from :func:`.embed_pairs.near_pairs` (no all pairs)."""
    found = []
    cache: dict[int, tuple[str, np.ndarray] | None] = {}

    def vec(i: int) -> tuple[str, np.ndarray] | None:
        if i not in cache:
            cache[i] = _vectors(conn, files[i]["embedding_id"])
        return cache[i]

    for file_ids, first, windows, durations in _first_windows(conn, files, ids).values():
        pairs, _ = near_pairs(
            first,
            windows,
            durations,
            # float16 rows renormalised: a hair of slack, the exact check below decides
            min_cos=options.min_embedding_similarity - 2e-3,
            tolerance_s=options.duration_tolerance_s,
        )
        for i, j in pairs.tolist():
            a, b = file_ids[i], file_ids[j]
            va, vb = vec(a), vec(b)
            if va is None or vb is None or va[0] != vb[0] or va[1].shape != vb[1].shape:
                continue
            lowest = float(np.min(np.sum(va[1] * vb[1], axis=1)))
            if lowest >= options.min_embedding_similarity:
                groups.union(a, b)
                found.append(
                    Evidence(
                        a=min(a, b),
                        b=max(a, b),
                        kind="embedding",
                        similarity=lowest,
                        embedding_cosine=_mean_cosine(va, vb),
                    )
                )
            if len(cache) > 4096:
                cache.clear()  # bounded memory: pairs come sorted by the first file
    return found


def bitrate_kbps(
    codec: str | None, sample_rate: int | None, channels: int | None, size: int, duration_s: float | None
) -> float | None:
    """The audio's bitrate: exact for PCM (rate x channels x bits: a long metadata chunk or a trim
    does not change it), else the file's size over its duration."""
    name = codec or ""
    bits = _PCM_BITS.match(name)
    width = int(bits.group(1)) if bits else 8 if name in ("pcm_mulaw", "pcm_alaw") else 0
    if width and sample_rate and channels:
        return round(sample_rate * channels * width / 1000, 1)
    return round(size * 8 / duration_s / 1000, 1) if duration_s else None


def _describe(f: sqlite3.Row) -> DuplicateFile:
    dur = f["duration_s"]
    return DuplicateFile(
        file_id=f["id"],
        path=f["path"],
        duration_s=None if dur is None else round(float(dur), 3),
        format=f["format"],
        codec=f["codec"],
        sample_rate=f["sample_rate"],
        channels=f["channels"],
        size=f["size"],
        bitrate_kbps=bitrate_kbps(f["codec"], f["sample_rate"], f["channels"], f["size"], dur),
        lossless=is_lossless(f["codec"], f["format"]),
    )


def _report(
    conn: sqlite3.Connection,
    files: dict[int, sqlite3.Row],
    groups: _Groups,
    edges: list[Evidence],
    printed: set[str],
    candidates: int,
) -> DuplicateReport:
    members: dict[int, list[int]] = {}
    for file_id in groups.parent:
        members.setdefault(groups.find(file_id), []).append(file_id)
    by_root: dict[int, list[Evidence]] = {}
    vectors: dict[int, tuple[str, np.ndarray] | None] = {}
    for e in edges:
        if e.kind == "fingerprint":
            for i in (e.a, e.b):
                if i not in vectors:
                    vectors[i] = _vectors(conn, files[i]["embedding_id"])
            e = Evidence(**{**asdict(e), "embedding_cosine": _mean_cosine(vectors[e.a], vectors[e.b])})
        by_root.setdefault(groups.find(e.a), []).append(e)
    out = []
    for root, ids in members.items():
        if len(ids) < 2:
            continue
        described = sorted((_describe(files[i]) for i in ids), key=DuplicateFile.rank, reverse=True)
        described[0] = DuplicateFile(**{**asdict(described[0]), "keeper": True})
        out.append(DuplicateGroup(files=tuple(described), evidence=tuple(by_root.get(root, []))))
    out.sort(key=lambda g: (-len(g.files), g.keeper.path))
    with_print = sum(1 for f in files.values() if f["content_hash"] in printed)
    return DuplicateReport(
        groups=tuple(out),
        files=len(files),
        fingerprinted=with_print,
        without_fingerprint=len(files) - with_print,
        candidates=candidates,
    )
