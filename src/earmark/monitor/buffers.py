"""Per-stream audio bookkeeping: the pre-roll history and loudness (numpy only).

Windows are cut by the stage's one cutter (:class:`earmark.stage.WindowCutter`).
Positions are absolute sample indexes on the stream's clock. A live source that
reconnects jumps its clock forward by the time it was away, so windows never
join audio across a gap and events keep real durations.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

__all__ = ["AudioHistory", "level_dbfs"]

SILENCE_DBFS = -120.0


def level_dbfs(samples: np.ndarray, *, rate: int, block_s: float = 0.1) -> float:
    """The loudest short-term level of a window, in dBFS (RMS of 100 ms blocks; full-scale square = 0).

    The loudest block rather than the whole window's RMS, so one short sound
    (glass, an impact) in a quiet 10 s window still passes a loudness gate.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.size == 0:
        return SILENCE_DBFS
    block = max(1, int(block_s * rate))
    n = x.size // block
    if n == 0:
        power = float(np.mean(x.astype(np.float64) ** 2))
    else:
        blocks = x[: n * block].astype(np.float64).reshape(n, block)
        power = float(np.max(np.mean(blocks**2, axis=1)))
    return max(SILENCE_DBFS, float(10.0 * np.log10(power + 1e-30)))


class AudioHistory:
    """The last ``keep_s`` of a stream (the pre-roll) plus open recordings, shared across threads.

    The source thread :meth:`append`s; the rule thread :meth:`begin`\\ s a clip
    at a past position (while it is still held) and :meth:`finish`\\ es it.
    """

    def __init__(self, *, rate: int, keep_s: float, max_clip_s: float) -> None:
        self.rate = rate
        self._keep = int(keep_s * rate)
        self._max_clip = int(max_clip_s * rate)
        self._chunks: deque[tuple[int, np.ndarray]] = deque()
        self._held = 0
        self._clips: dict[str, tuple[int, list[tuple[int, np.ndarray]]]] = {}
        self._lock = threading.Lock()

    def append(self, position: int, chunk: np.ndarray) -> None:
        with self._lock:
            self._chunks.append((position, chunk))
            self._held += chunk.size
            while self._chunks and self._held - self._chunks[0][1].size >= self._keep:
                self._held -= self._chunks.popleft()[1].size
            for start, parts in self._clips.values():
                if position < start + self._max_clip:
                    parts.append((position, chunk))

    def begin(self, key: str, start: int) -> None:
        """Start recording clip ``key`` from ``start`` (as far back as the history reaches)."""
        with self._lock:
            parts = [(p, c) for p, c in self._chunks if p + c.size > start]
            self._clips[key] = (start, parts)

    def finish(self, key: str, end: int) -> np.ndarray:
        """Stop clip ``key``; return its samples from its start to ``end`` (gaps left out)."""
        with self._lock:
            start, parts = self._clips.pop(key, (end, []))
        stop = min(end, start + self._max_clip)
        pieces = []
        for p, c in parts:
            a, b = max(start, p), min(stop, p + c.size)
            if b > a:
                pieces.append(c[a - p : b - p])
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    def recording(self) -> list[str]:
        with self._lock:
            return list(self._clips)
