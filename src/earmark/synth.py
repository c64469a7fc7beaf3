"""Synthetic sounds: the vocabulary of the tiny test model, and demo material.

The tiny CLAP model under ``tests/assets/tiny-clap`` is trained on exactly these
generators, so a file made here is something that model really knows. Nothing
here is a real-world sound; the real checkpoints know real sounds.

Only numpy is imported.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SOUNDS", "SYNONYMS", "make", "scene", "sequence"]

RATE = 48_000

Generator = Callable[[np.random.Generator, int, int], np.ndarray]


def _t(n: int, rate: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / rate


def _beep(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    freq = rng.uniform(600, 2400)
    tone = np.sin(2 * np.pi * freq * _t(n, rate))
    if rng.random() < 0.4:  # beeping: on/off pattern, mostly on
        period = rng.uniform(0.3, 1.0)
        duty = rng.uniform(0.6, 0.9)
        tone *= (_t(n, rate) % period) < duty * period
    return tone * rng.uniform(0.2, 0.8)


def _hum(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    f0 = rng.choice([50.0, 60.0]) * rng.integers(1, 3)
    t = _t(n, rate)
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    return np.asarray(wave) / 2.0 * rng.uniform(0.2, 0.7)


def _noise(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    return rng.standard_normal(n) * rng.uniform(0.05, 0.3)


def _clicks(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    out = np.zeros(n)
    per_s = rng.uniform(2, 12)
    burst = np.exp(-np.arange(int(0.003 * rate)) / (0.0006 * rate))
    burst *= rng.standard_normal(burst.size)
    pos = 0.0
    while pos < n:
        i = int(pos)
        seg = out[i : i + burst.size]
        seg += burst[: seg.size] * rng.uniform(0.4, 1.0)
        pos += rate / per_s * rng.uniform(0.7, 1.3)
    return out + rng.standard_normal(n) * 0.002


def _chirp(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    sweep_s = rng.uniform(0.4, 2.0)
    f_lo, f_hi = rng.uniform(200, 600), rng.uniform(3000, 8000)
    t = _t(n, rate) % sweep_s
    # phase of a linear sweep from f_lo to f_hi over sweep_s
    phase = 2 * np.pi * (f_lo * t + (f_hi - f_lo) * t**2 / (2 * sweep_s))
    return np.sin(phase) * rng.uniform(0.2, 0.8)


def _silence(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    level = 0.0 if rng.random() < 0.3 else 10 ** (rng.uniform(-80, -60) / 20)
    return rng.standard_normal(n) * level


SOUNDS: dict[str, Generator] = {
    "beep": _beep,
    "hum": _hum,
    "noise": _noise,
    "clicks": _clicks,
    "chirp": _chirp,
    "silence": _silence,
}

# Other words the tiny model learned for the same sounds. "tone" and "beep"
# name one sound on purpose: asking for both is an ambiguous label set.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "beep": ("beep", "beeping", "tone"),
    "hum": ("hum", "humming", "mains hum"),
    "noise": ("noise", "white noise", "hiss"),
    "clicks": ("clicks", "clicking", "ticking"),
    "chirp": ("chirp", "sweep", "chirping"),
    "silence": ("silence", "quiet", "nothing"),
}


def make(kind: str, seconds: float, *, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """One synthetic sound as float32 mono in [-1, 1].

    Args:
        kind: one of ``SOUNDS``.
        seconds: duration.
        seed: variation (frequency, level, rhythm); the same seed gives the same samples.
        rate: sample rate in Hz.
    """
    if kind not in SOUNDS:
        raise ValueError(f"unknown sound {kind!r}; expected one of: {', '.join(SOUNDS)}")
    rng = np.random.default_rng([seed, list(SOUNDS).index(kind)])
    wave = SOUNDS[kind](rng, int(round(seconds * rate)), rate)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def sequence(parts: list[tuple[str, float]], *, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Sounds one after another, e.g. ``[("hum", 10), ("clicks", 10)]``."""
    return np.concatenate([make(k, s, seed=seed + i, rate=rate) for i, (k, s) in enumerate(parts)])


def scene(
    seconds: float,
    events: int,
    *,
    seed: int = 0,
    rate: int = RATE,
    kinds: tuple[str, ...] = ("beep", "chirp", "clicks"),
    backgrounds: tuple[str, ...] = ("hum", "noise", "silence"),
    event_s: tuple[float, float] = (1.5, 20.0),
    min_gap_s: float = 12.0,
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A test scene with known answers: ``events`` sounds at random (seeded) times over backgrounds.

    Each event is one of ``kinds`` lasting ``event_s`` (uniform); between events, and before the
    first and after the last, lie stretches of one of ``backgrounds`` at least ``min_gap_s`` long.

    Returns:
        The wave (float32 mono at ``rate``, ``seconds`` long) and the true events as
        ``(kind, start_s, end_s)`` in time order.

    Raises:
        ValueError: the events and gaps do not fit in ``seconds``.
    """
    rng = np.random.default_rng([seed, 7])
    lengths = rng.uniform(event_s[0], event_s[1], events)
    spare = seconds - lengths.sum() - (events + 1) * min_gap_s
    if spare < 0:
        raise ValueError(f"{events} events and their gaps do not fit in {seconds:g} s")
    gaps = min_gap_s + rng.dirichlet(np.ones(events + 1)) * spare
    parts: list[tuple[str, float]] = []
    truth: list[tuple[str, float, float]] = []
    t = 0.0
    for i in range(events):
        parts.append((str(rng.choice(backgrounds)), float(gaps[i])))
        kind = str(rng.choice(kinds))
        t += float(gaps[i])
        parts.append((kind, float(lengths[i])))
        truth.append((kind, round(t, 3), round(t + float(lengths[i]), 3)))
        t += float(lengths[i])
    parts.append((str(rng.choice(backgrounds)), seconds - t))
    # exact sample positions: cut each part at the rounded boundaries, so truth matches the samples
    edges = np.round(np.cumsum([0.0] + [s for _, s in parts]) * rate).astype(int)
    wave = np.concatenate(
        [
            make(k, (b - a) / rate, seed=seed * 1000 + i, rate=rate)
            for i, ((k, _), a, b) in enumerate(zip(parts, edges[:-1], edges[1:], strict=True))
        ]
    )
    return wave, truth
