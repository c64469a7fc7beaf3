"""Admission: the server holds a bounded number of requests and refuses the rest at once.

Batching is not here: requests share the model through the stage's one batch
policy (:class:`earmark.stage.ModelRunner`: fixed-shape calls, a short wait
while other requests are decoding), as every other surface does.

:class:`Admission` bounds how many requests the server holds: past
``capacity`` a request is refused at once with :class:`ServerBusy`, never
left waiting.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ServerBusy

__all__ = ["Admission"]

log = logging.getLogger("earmark")


class Admission:
    """Counts requests in the server and refuses those beyond ``capacity`` at once.

    Args:
        capacity: requests held at once (being worked on plus waiting).
        parallelism: requests worked on at once, for the Retry-After estimate.
    """

    def __init__(self, capacity: int, parallelism: int = 1) -> None:
        self.capacity = capacity
        self.parallelism = max(1, parallelism)
        self._lock = threading.Lock()
        self._held = 0
        self._mean_s = 1.0  # running mean of request time, for Retry-After

    @property
    def held(self) -> int:
        return self._held

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place for the duration of a request.

        Raises:
            ServerBusy: the server already holds ``capacity`` requests.
        """
        with self._lock:
            if self._held >= self.capacity:
                raise ServerBusy(self.retry_after_s())
            self._held += 1
        start = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - start
            with self._lock:
                self._held -= 1
                self._mean_s = 0.9 * self._mean_s + 0.1 * elapsed

    def retry_after_s(self) -> int:
        """Whole seconds until a place is likely free (at least 1)."""
        return max(1, min(60, math.ceil(self._mean_s * self._held / self.parallelism)))
