"""Candidate pairs of short sounds whose CLAP embeddings may be the same recording, without all pairs.

Files too short to fingerprint are matched by their window embeddings
(:mod:`.duplicates`): the same number of windows, every window pair at cosine
at least ``min_cos``, durations within a tolerance. Comparing every pair of a
library of one-shots (100 000 clicks, hits and blips under 4 s) would be
billions of comparisons, so candidates come from random-hyperplane hashing
(SimHash) of each file's first window: two unit vectors at angle ``θ`` fall on
the same side of a random hyperplane with probability ``1 - θ/π``. Each of
:data:`TABLES` tables hashes with ``bits`` hyperplanes, ``bits`` chosen so a
pair exactly at ``min_cos`` shares a table's key with probability about
one half; a pair is missed only when it differs in every table (at the bar:
about ``0.5 ** TABLES``, 1 in 4 000; real transcodes sit far above the bar
and are found with certainty in practice).

In each table the files are sorted by (key, windows, duration) and each file
is paired with at most :data:`NEIGHBOURS` next files of the same key and
window count within the duration tolerance. So the work is at most
``TABLES * NEIGHBOURS`` comparisons per file, whatever the library's size:
a bucket crowded by many near-identical files (the same click filed 50
times) still links its members in a chain. Each such pair is first compared
by sign sketches (:data:`SKETCH_BITS` more hyperplanes, 32 bytes a file: the
share of differing signs estimates the angle; the bar sits 5 standard
deviations above what a pair at ``min_cos`` shows, so a pair at the bar
fails it about once in a million, while two different sounds of one kind at
cosine 0.8 pass about once in 2 000), then the survivors' first windows by
cosine, a necessary condition; :mod:`.duplicates` checks the other windows.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NEIGHBOURS", "SKETCH_BITS", "TABLES", "near_pairs"]

TABLES = 12
NEIGHBOURS = 16
SKETCH_BITS = 256  # more hyperplanes, for the sketch only (a multiple of 64)
_SEED = 19  # fixed: the same library always gives the same pairs


def _bits(min_cos: float) -> int:
    """Hyperplanes per table so that a pair at ``min_cos`` shares a key with probability ~1/2."""
    split = math.acos(min(max(min_cos, -1.0), 1.0)) / math.pi  # chance one hyperplane separates the pair
    if split <= 0.0:
        return 24
    return int(min(24, max(2, math.floor(math.log(0.5) / math.log1p(-split)))))


def _sketch_limit(min_cos: float, n_bits: int) -> int:
    """Most differing sign bits a pair at ``min_cos`` shows, with a wide margin (mean + 5 sd + 2)."""
    split = math.acos(min(max(min_cos, -1.0), 1.0)) / math.pi
    return int(math.ceil(n_bits * split + 5 * math.sqrt(n_bits * split * (1 - split)) + 2))


def near_pairs(
    first: np.ndarray,
    windows: np.ndarray,
    durations: np.ndarray,
    *,
    min_cos: float,
    tolerance_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, whose first windows are at cosine ``>= min_cos`` (and their cosines).

    Args:
        first: ``(n, dim)`` unit first-window embeddings (float16 or float32), one model.
        windows: ``(n,)`` window counts: only files with the same count pair up.
        durations: ``(n,)`` seconds: only files within ``tolerance_s`` pair up.
        min_cos: the cosine bar.
        tolerance_s: how far durations may differ.

    Returns:
        ``(pairs (m, 2) int64 sorted, cosines (m,))``.
    """
    n = len(first)
    if n < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    bits = _bits(min_cos)
    width = TABLES * bits + SKETCH_BITS
    planes = np.random.default_rng(_SEED).standard_normal((first.shape[1], width)).astype(np.float32)
    signs = np.empty((n, TABLES * bits), bool)
    sketch = np.empty((n, SKETCH_BITS // 64), np.uint64)
    for lo in range(0, n, 8192):  # float32 a block at a time: no float32 copy of all of ``first``
        block = first[lo : lo + 8192].astype(np.float32) @ planes > 0
        signs[lo : lo + 8192] = block[:, : TABLES * bits]
        sketch[lo : lo + 8192] = np.packbits(block[:, TABLES * bits :], axis=1).view(np.uint64)
    limit = _sketch_limit(min_cos, SKETCH_BITS)
    weights = np.int64(1) << np.arange(bits, dtype=np.int64)
    windows = np.asarray(windows, np.int64)
    durations = np.asarray(durations, np.float64)
    codes = []
    for t in range(TABLES):
        key = signs[:, t * bits : (t + 1) * bits].astype(np.int64) @ weights
        order = np.lexsort((durations, windows, key))
        k, w, d = key[order], windows[order], durations[order]
        for step in range(1, min(NEIGHBOURS, n - 1) + 1):
            ok = (k[step:] == k[:-step]) & (w[step:] == w[:-step]) & (d[step:] - d[:-step] <= tolerance_s)
            if not ok.any():
                break  # sorted by duration within a key: a farther neighbour is never closer
            a, b = order[:-step][ok], order[step:][ok]
            near = np.bitwise_count(sketch[a] ^ sketch[b]).sum(axis=1, dtype=np.int64) <= limit
            codes.append(np.minimum(a[near], b[near]) * n + np.maximum(a[near], b[near]))
    if not codes:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    unique = np.unique(np.concatenate(codes))
    i, j = unique // n, unique % n
    cos = np.empty(unique.size)
    for lo in range(0, unique.size, 65536):
        x = first[i[lo : lo + 65536]].astype(np.float32)
        y = first[j[lo : lo + 65536]].astype(np.float32)
        cos[lo : lo + 65536] = np.einsum("ij,ij->i", x, y)
    keep = cos >= min_cos
    return np.stack([i[keep], j[keep]], axis=1), cos[keep]
