"""The one window cutter: where analysis windows start and end, for files, uploads and streams.

The policy (the same for every surface):

- audio no longer than one window is one window holding all of it (the
  backend repeat-pads it to the model's length, as the reference does);
- longer audio gets a window every ``hop`` samples, plus one aligned to the
  end when the hops do not reach it, so the tail is always heard;
- a live stream gets its windows as soon as they are complete; when it ends
  (or drops) :meth:`WindowCutter.finish` adds the tail window (or the one short
  window) exactly as for a file, so every second of audio is scored.

:func:`window_spans` says it on a known length; :class:`WindowCutter` does it on
a chunk stream holding at most about one window, and gives the same windows.
Pure numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

__all__ = ["WindowCutter", "iter_windows", "window_spans"]


def window_spans(n_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Start/end sample of each analysis window over ``n_samples`` (see the module docstring).

    Args:
        n_samples: audio length in samples (0 gives no windows).
        window: window length in samples.
        hop: step between window starts in samples.

    Returns:
        ``(start, end)`` pairs in order.
    """
    _check(window, hop)
    if n_samples <= 0:
        return []
    if n_samples <= window:
        return [(0, n_samples)]
    spans = [(s, s + window) for s in range(0, n_samples - window + 1, hop)]
    if spans[-1][1] < n_samples:
        spans.append((n_samples - window, n_samples))
    return spans


def iter_windows(chunks: Iterable[np.ndarray], *, window: int, hop: int) -> Iterator[tuple[int, np.ndarray]]:
    """The windows of :func:`window_spans` over a chunk stream, without joining it.

    Yields:
        ``(start_sample, samples)``; ``samples`` is a float32 copy.
    """
    cutter = WindowCutter(window=window, hop=hop)
    for chunk in chunks:
        yield from cutter.push(chunk)
    yield from cutter.finish()


class WindowCutter:
    """Cuts a chunk stream into windows as they complete; :meth:`finish` adds the tail.

    Positions are absolute sample indexes on the stream's clock (a live source
    that reconnects jumps its clock with :meth:`reset`).

    Args:
        window: window length in samples.
        hop: step between window starts in samples (at most ``window``).
        start: position of the first sample.
    """

    def __init__(self, *, window: int, hop: int, start: int = 0) -> None:
        _check(window, hop)
        if hop > window:
            raise ValueError("hop must not be longer than the window")
        self.window, self.hop = window, hop
        self.reset(start)

    def reset(self, position: int) -> None:
        """Forget buffered audio (without a tail window); the next window starts at ``position``."""
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = position
        self._origin = position
        self._next = position
        self._last_end = position  # end of the last window given

    @property
    def position(self) -> int:
        """Absolute position just after the last sample pushed."""
        return self._buf_start + self._buf.size

    def push(self, chunk: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Add samples; yield every ``(start, window samples)`` now complete."""
        self._buf = np.concatenate([self._buf, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        while self._next + self.window <= self.position:
            i = self._next - self._buf_start
            yield self._next, self._buf[i : i + self.window].copy()
            self._last_end = self._next + self.window
            self._next += self.hop
        # keep the last `window` samples: the end-aligned tail window may need them
        keep_from = max(0, min(self._next - self._buf_start, self._buf.size - self.window))
        if keep_from:
            self._buf, self._buf_start = self._buf[keep_from:], self._buf_start + keep_from

    def finish(self) -> Iterator[tuple[int, np.ndarray]]:
        """The audio ended (or dropped): yield its tail window, if any, and start afresh after it.

        A stream shorter than one window gives that one short window; a longer one
        gives a window aligned to its end unless the last window already reached it.
        """
        end = self.position
        if end > self._last_end:
            if self._last_end == self._origin:  # no full window yet: the short input is one window
                yield self._origin, self._buf[self._origin - self._buf_start :].copy()
            else:
                yield end - self.window, self._buf[-self.window :].copy()
        self.reset(end)


def _check(window: int, hop: int) -> None:
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
