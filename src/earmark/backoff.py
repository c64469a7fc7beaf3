"""Exponential backoff with jitter: the one rule for reconnecting sources and retrying sinks.

Wait ``initial_s`` doubling per attempt up to ``max_s``, then a random
fraction in [50 %, 100 %] of it, so many clients that failed together do not
retry together. Pure; the caller owns the random generator (jitter never
touches results).
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay_s"]


def backoff_delay_s(attempt: int, *, initial_s: float, max_s: float, rng: random.Random | None) -> float:
    """Seconds to wait before retry ``attempt`` (0-based).

    Args:
        attempt: retries already made since the last success.
        initial_s: the first wait.
        max_s: the cap.
        rng: jitter source; ``None`` for no jitter.
    """
    base = min(max_s, initial_s * 2.0 ** min(max(0, attempt), 30))
    return base if rng is None else base * rng.uniform(0.5, 1.0)
