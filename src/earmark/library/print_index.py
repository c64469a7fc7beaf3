"""Candidate pairs of fingerprints that may be the same recording, without comparing all pairs.

An inverted index over fingerprint *keys*: each of a fingerprint's first
:data:`QUERY_ITEMS` items gives three keys, its low 16 bits, its high 16 bits
and the whole item (a transcode that flips a bit or two of an item usually
leaves one half intact; an untouched whole item is rarer but far more
telling). Keys are sorted once (``O(K log K)`` for ``K`` keys); every run of
equal keys lists the fingerprints sharing it. Keys held by more than
:data:`MAX_BUCKET` fingerprints (silence, a steady hum, bits a kind of sound
always sets: items that say nothing about the recording) are dropped, so the
pairs made per key are bounded and the work grows with the library, not its
square.

Two fingerprints sharing at least :data:`MIN_SHARED` keys may be a candidate;
each shared key counts ``log(n / bucket size)`` (a key few fingerprints hold
says more), and each fingerprint keeps only its :data:`TOP_PARTNERS` best
partners by that weight. So the candidates are at most ``TOP_PARTNERS`` per
file, each checked exactly by
:func:`earmark.library.fingerprints.similarities`. On the test library (103
files) every version of a recording is among its versions' best partners; on
synthetic fingerprints with biased bits (``bench/bench_duplicates.py``) every
copy is found at 10 000 and 100 000 fingerprints.
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
    # three tables in one key space: low halves [0, 2**16), high halves [2**16, 2**17), whole items above
    return np.unique(np.concatenate([head & 0xFFFF, (head >> 16) | 0x10000, head | 0x100000000]))


def candidate_pairs(prints: Sequence[np.ndarray]) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, of indexes into ``prints`` worth comparing; shape ``(n, 2)``, sorted."""
    keys = [_keys(p) for p in prints]
    n = len(keys)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    owner = np.repeat(np.arange(n, dtype=np.int64), [k.size for k in keys])
    flat = np.concatenate(keys)
    order = np.argsort(flat, kind="stable")
    flat, owner = flat[order], owner[order]
    del order
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    sizes = np.diff(np.r_[starts, flat.size])
    del flat
    keep = (sizes >= 2) & (sizes <= MAX_BUCKET)
    pair_codes, pair_weights = [], []
    # buckets of the same size at once: all (a, b) slots of an s-sized bucket are the same index pattern
    for size in np.unique(sizes[keep]):
        rows = starts[keep & (sizes == size)]
        members = owner[rows[:, None] + np.arange(size)]  # (buckets, size); owners ascending
        a, b = np.triu_indices(int(size), k=1)
        codes = (members[:, a] * n + members[:, b]).ravel()
        pair_codes.append(codes)
        # a key few fingerprints share says more (inverse document frequency)
        pair_weights.append(np.full(codes.size, np.log(max(n, MAX_BUCKET + 1) / size)))
    if not pair_codes:
        return np.zeros((0, 2), np.int64)
    codes, inverse, counts = np.unique(np.concatenate(pair_codes), return_inverse=True, return_counts=True)
    weights = np.bincount(inverse, weights=np.concatenate(pair_weights))
    enough = counts >= MIN_SHARED
    codes, weights = codes[enough], weights[enough]
    first, second = codes // n, codes % n
    # each file's best partners: rank both directions by (file, -weight of shared keys)
    files = np.concatenate([first, second])
    score = np.concatenate([weights, weights])
    pair_index = np.concatenate([np.arange(codes.size), np.arange(codes.size)])
    order = np.lexsort((-score, files))
    files, pair_index = files[order], pair_index[order]
    group_start = np.flatnonzero(np.r_[True, files[1:] != files[:-1]])
    rank = np.arange(files.size) - np.repeat(group_start, np.diff(np.r_[group_start, files.size]))
    chosen = np.unique(pair_index[rank < TOP_PARTNERS])
    return np.stack([first[chosen], second[chosen]], axis=1)
