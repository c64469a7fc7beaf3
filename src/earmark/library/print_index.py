"""Candidate pairs of fingerprints that may be the same recording, without comparing all pairs.

An inverted index over fingerprint *keys*: each of a fingerprint's first
:data:`QUERY_ITEMS` items gives two keys, its low and its high 16 bits (a
transcode that flips one or two bits of an item usually leaves one half
intact). Keys are sorted once (``O(K log K)`` for ``K`` keys); every run of
equal keys lists the fingerprints sharing it, and two fingerprints sharing at
least :data:`MIN_SHARED` distinct keys may be a candidate. Fingerprints of
similar-sounding audio share many keys by chance (some Chromaprint bits hardly
ever change for a kind of sound), so each fingerprint keeps only its
:data:`TOP_PARTNERS` best-sharing partners: the candidates are at most
``TOP_PARTNERS`` per file, checked exactly by
:func:`earmark.library.fingerprints.similarities`. On the test library (103
files, every version of a recording sharing 8-40 keys) the true partners of
every file were within its 7 best.

Keys held by more than :data:`MAX_BUCKET` fingerprints (silence, a steady hum:
items that say nothing about the recording) are dropped, so the pairs made per
key are bounded and the work grows with the library, not its square: 100 000
fingerprints give about 16 million keys, sorted in a few seconds, and the
candidates are the true duplicates plus a few chance collisions
(``bench/bench_duplicates.py``). Memory: 12 bytes per key (about 190 MB at
100 000 files), freed when the search ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_BUCKET", "MIN_SHARED", "QUERY_ITEMS", "TOP_PARTNERS", "candidate_pairs"]

QUERY_ITEMS = 80  # ~10 s from the start: a start trim of ~2 s still leaves most of them shared
MIN_SHARED = 2
MAX_BUCKET = 48
TOP_PARTNERS = 12


def _keys(items: np.ndarray) -> np.ndarray:
    head = items[:QUERY_ITEMS].astype(np.int64)
    # low halves in [0, 2**16), high halves in [2**16, 2**17): one key space, two tables
    return np.unique(np.concatenate([head & 0xFFFF, (head >> 16) | 0x10000]))


def candidate_pairs(prints: Sequence[np.ndarray]) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, of indexes into ``prints`` worth comparing; shape ``(n, 2)``, sorted."""
    keys = [_keys(p) for p in prints]
    if not keys:
        return np.zeros((0, 2), np.int64)
    owner = np.repeat(np.arange(len(keys), dtype=np.int64), [k.size for k in keys])
    flat = np.concatenate(keys)
    order = np.argsort(flat, kind="stable")
    flat, owner = flat[order], owner[order]
    del order
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    sizes = np.diff(np.r_[starts, flat.size])
    del flat
    keep = (sizes >= 2) & (sizes <= MAX_BUCKET)
    pair_codes = []
    n = len(keys)
    # buckets of the same size at once: all (a, b) slots of an s-sized bucket are the same index pattern
    for size in np.unique(sizes[keep]):
        rows = starts[keep & (sizes == size)]
        members = owner[rows[:, None] + np.arange(size)]  # (buckets, size); owners ascending
        a, b = np.triu_indices(int(size), k=1)
        pair_codes.append((members[:, a] * n + members[:, b]).ravel())
    if not pair_codes:
        return np.zeros((0, 2), np.int64)
    codes, counts = np.unique(np.concatenate(pair_codes), return_counts=True)
    keep_pairs = counts >= MIN_SHARED
    codes, counts = codes[keep_pairs], counts[keep_pairs]
    first, second = codes // n, codes % n
    # each file's best partners: rank both directions by (file, -shared keys)
    files = np.concatenate([first, second])
    shared = np.concatenate([counts, counts])
    pair_index = np.concatenate([np.arange(codes.size), np.arange(codes.size)])
    order = np.lexsort((-shared, files))
    files, pair_index = files[order], pair_index[order]
    group_start = np.flatnonzero(np.r_[True, files[1:] != files[:-1]])
    rank = np.arange(files.size) - np.repeat(group_start, np.diff(np.r_[group_start, files.size]))
    chosen = np.unique(pair_index[rank < TOP_PARTNERS])
    return np.stack([first[chosen], second[chosen]], axis=1)
