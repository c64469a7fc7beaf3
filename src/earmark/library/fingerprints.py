"""Chromaprint acoustic fingerprints of library files: computed during ``tag``, compared by ``duplicates``.

A Chromaprint fingerprint (the AcoustID standard) is one 32-bit item per
~0.124 s of audio, each bit comparing the energy of two chroma bands over a
short span. Transcoding (mp3, ogg, another sample rate, mono) flips only a few
bits of a few items, so two files of the same recording line up item by item;
unrelated audio agrees on about half the bits, like noise. It needs about 4 s
of audio (the first items cover a 2 s span) and tells apart only sounds that
change over time: a steady hum or tone gives the same few items whatever the
recording.

Fingerprints come from Debian's ``fpcalc`` (``libchromaprint-tools``), run in
the tagging run's hashing threads, once per content hash (a re-run or a second
copy of the same bytes costs nothing). They are stored per content hash in
``lib_fingerprints``; a file without ``fpcalc`` installed is simply not
fingerprinted (``earmark duplicates`` then says so) and tagging goes on.

Similarity of two fingerprints (:func:`similarity`): the share of items that
agree within :data:`ITEM_BITS` bits, at the best alignment within
:data:`MAX_OFFSET` items (so a trim of up to ~2 s at the start is found), over
an overlap of at least :data:`MIN_OVERLAP` of the shorter one. Same recording,
any of the transcodes the tests make (mp3 128k, ogg 22 kHz mono, a 0.5 s trim):
0.85-1.0; unrelated noise textures, chirps and click mixes of the same kind:
at most 0.58 (``tests/test_library_duplicates.py``, 103 files, 5 253 pairs).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ALGORITHM",
    "Fingerprint",
    "available",
    "compute",
    "find",
    "missing",
    "save",
    "similarities",
    "similarity",
]

log = logging.getLogger("earmark")

ALGORITHM = "chromaprint-fpcalc-2"  # fpcalc's default algorithm (2), as stored in lib_fingerprints
LENGTH_S = 120  # fingerprint the first two minutes (fpcalc's default): enough to tell recordings apart
MIN_ITEMS = 8  # fewer items (under about 3.6 s of audio) say too little; such files rely on embeddings
# shorter files may have no usable fingerprint (fpcalc: 3.2 s -> 4 items, 2.9 s -> 2, 0.3 s -> none)
SHORT_S = 4.0
ITEM_BITS = 4  # an item "agrees" when at most this many of its 32 bits differ
VERIFY_ITEMS = 240  # items compared per fingerprint (~30 s from the start)
MAX_OFFSET = 16  # items (~2 s) of misalignment searched: trims at the start
MIN_OVERLAP = 0.8  # of the shorter fingerprint, at that alignment
TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """A file's Chromaprint items (uint32), or why there are none."""

    items: np.ndarray
    duration_s: float | None = None
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.error is None and len(self.items) >= MIN_ITEMS


_warned = False


def available() -> bool:
    """Whether ``fpcalc`` is installed (Debian ``libchromaprint-tools``)."""
    return shutil.which("fpcalc") is not None


def compute(path: str) -> Fingerprint | None:
    """Fingerprint a file with ``fpcalc``; None when ``fpcalc`` is not installed (warned once).

    A file fpcalc cannot read gives a :class:`Fingerprint` with ``error`` set,
    stored like any other, so it is not tried again.
    """
    global _warned
    exe = shutil.which("fpcalc")
    if exe is None:
        if not _warned:
            log.warning("fpcalc not found (Debian: apt install libchromaprint-tools): no fingerprints")
            _warned = True
        return None
    try:
        done = subprocess.run(
            [exe, "-raw", "-json", "-length", str(LENGTH_S), path],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as ex:
        return Fingerprint(items=_EMPTY, error=f"fpcalc failed: {ex}")
    # fpcalc may print a decoder complaint on stderr and still give a complete fingerprint
    try:
        data = json.loads(done.stdout)
        items = np.array(data["fingerprint"], dtype=np.uint32)
    except (ValueError, KeyError, TypeError):
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        return Fingerprint(items=_EMPTY, error=f"fpcalc: {reason}")
    return Fingerprint(items=items, duration_s=float(data.get("duration") or 0.0))


_EMPTY = np.zeros(0, np.uint32)


def missing(conn: sqlite3.Connection, content_hash: str) -> bool:
    """True when these bytes have no stored fingerprint (nor a recorded failure)."""
    return (
        conn.execute("SELECT 1 FROM lib_fingerprints WHERE content_hash=?", (content_hash,)).fetchone()
        is None
    )


def save(conn: sqlite3.Connection, content_hash: str, fp: Fingerprint) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO lib_fingerprints (content_hash, algorithm, duration_s, n_items, items, error)"
        " VALUES (?,?,?,?,?,?)",
        (content_hash, ALGORITHM, fp.duration_s, len(fp.items), fp.items.astype("<u4").tobytes(), fp.error),
    )


def find(conn: sqlite3.Connection, content_hash: str) -> Fingerprint | None:
    row = conn.execute(
        "SELECT duration_s, items, error FROM lib_fingerprints WHERE content_hash=?", (content_hash,)
    ).fetchone()
    if row is None:
        return None
    return Fingerprint(items=from_blob(row["items"]), duration_s=row["duration_s"], error=row["error"])


def from_blob(blob: bytes | None) -> np.ndarray:
    return np.frombuffer(blob or b"", dtype="<u4").astype(np.uint32)


def similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(share of agreeing items at the best alignment, that offset in items) of two fingerprints.

    A positive offset means ``b`` starts that many items into ``a`` (``b``
    trimmed at the start). 0.0 when they never overlap enough. The first
    :data:`VERIFY_ITEMS` items are compared (see :func:`similarities`).
    """
    shares, offsets = similarities([a, b], np.array([[0, 1]]))
    return float(shares[0]), int(offsets[0])


def similarities(
    prints: list[np.ndarray], pairs: np.ndarray, *, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`similarity` of many pairs ``(i, j)`` of ``prints`` at once (vectorised over pairs).

    Each fingerprint's first :data:`VERIFY_ITEMS` items go into one padded
    matrix; per chunk of pairs and per offset, one XOR, one popcount and a
    masked count. Returns (shares, offsets), one per pair.
    """
    n_pairs = len(pairs)
    shares, offsets = np.zeros(n_pairs), np.zeros(n_pairs, np.int64)
    if n_pairs == 0:
        return shares, offsets
    width = VERIFY_ITEMS
    matrix = np.zeros((len(prints), width), np.uint32)
    lengths = np.zeros(len(prints), np.int64)
    for k, p in enumerate(prints):
        head = p[:width]
        matrix[k, : head.size] = head
        lengths[k] = head.size
    cols = np.arange(width)
    for lo in range(0, n_pairs, chunk):
        i, j = pairs[lo : lo + chunk, 0], pairs[lo : lo + chunk, 1]
        a, b, la, lb = matrix[i], matrix[j], lengths[i], lengths[j]
        need = np.maximum(1, np.ceil(MIN_OVERLAP * np.minimum(la, lb)))
        best, best_off = np.zeros(len(i)), np.zeros(len(i), np.int64)
        for off in range(-MAX_OFFSET, MAX_OFFSET + 1):
            # a[k + off] against b[k]: valid where both indexes fall inside their fingerprints
            if off >= 0:
                x, y, idx_a, idx_b = a[:, off:], b[:, : width - off], cols[off:], cols[: width - off]
            else:
                x, y, idx_a, idx_b = a[:, : width + off], b[:, -off:], cols[: width + off], cols[-off:]
            valid = (idx_a[None, :] < la[:, None]) & (idx_b[None, :] < lb[:, None])
            agree = (np.bitwise_count(x ^ y) <= ITEM_BITS) & valid
            n = valid.sum(axis=1)
            share = np.where(n >= need, agree.sum(axis=1) / np.maximum(n, 1), 0.0)
            better = share > best
            best[better], best_off[better] = share[better], off
        shares[lo : lo + chunk], offsets[lo : lo + chunk] = best, best_off
    return shares, offsets
