"""Duplicate detection building blocks without audio, fpcalc or the model: the short-sound embedding index."""

from __future__ import annotations

import numpy as np

from earmark.library.embed_pairs import NEIGHBOURS, TABLES, near_pairs


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _near(rng: np.random.Generator, centre: np.ndarray, cos: float) -> np.ndarray:
    """A unit vector at exactly ``cos`` to the unit vector ``centre``."""
    noise = rng.standard_normal(centre.size)
    noise -= (noise @ centre) * centre
    return _unit(cos * centre + np.sqrt(1 - cos**2) * _unit(noise))


def test_short_sound_pairs_match_brute_force_on_clustered_embeddings() -> None:
    rng = np.random.default_rng(5)
    dim, kinds = 64, 12
    centres = _unit(rng.standard_normal((kinds, dim)))
    # 3000 different sounds of 12 kinds (cosine ~0.9 within a kind), then 300 copies of some at 0.995
    vectors = [_near(rng, centres[k % kinds], 0.9) for k in range(3000)]
    durations = list(rng.uniform(0.2, 2.5, 3000))
    for src in rng.choice(3000, 300, replace=False):
        vectors.append(_near(rng, vectors[src], 0.995))
        durations.append(durations[src] + rng.uniform(-0.05, 0.05))
    first = np.stack(vectors).astype(np.float16)
    windows = np.ones(len(first), np.int64)
    dur = np.array(durations)
    pairs, cos = near_pairs(first, windows, dur, min_cos=0.99, tolerance_s=0.6)

    f32 = first.astype(np.float32)
    full = f32 @ f32.T
    close = np.abs(dur[:, None] - dur[None, :]) <= 0.6
    i, j = np.nonzero(np.triu((full >= 0.99) & close, k=1))
    expected = set(zip(i.tolist(), j.tolist(), strict=True))
    assert len(expected) >= 300
    assert set(map(tuple, pairs.tolist())) == expected, "a short sound and its copy were not paired"
    assert np.all(cos >= 0.99)


def test_duration_and_window_count_keep_apart_what_the_cosine_would_join() -> None:
    v = _unit(np.ones((1, 32)))
    first = np.repeat(v, 4, axis=0).astype(np.float16)
    pairs, _ = near_pairs(
        first, np.array([1, 1, 2, 1]), np.array([1.0, 1.3, 1.0, 2.5]), min_cos=0.99, tolerance_s=0.6
    )
    assert pairs.tolist() == [[0, 1]], "files of other lengths or window counts were paired"


def test_a_crowded_bucket_links_its_members_with_bounded_work() -> None:
    n = 600  # the same click filed 600 times: every pair matches, but only a chain is compared
    first = np.repeat(_unit(np.arange(1, 33, dtype=np.float32)[None, :]), n, axis=0).astype(np.float16)
    pairs, _ = near_pairs(first, np.ones(n, np.int64), np.full(n, 0.4), min_cos=0.99, tolerance_s=0.6)
    assert len(pairs) <= n * NEIGHBOURS * TABLES and len(pairs) < n * (n - 1) // 2 // 10
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs.tolist():
        parent[find(a)] = find(b)
    assert len({find(x) for x in range(n)}) == 1, "copies of one click were split into several groups"


def test_keeper_ignores_wav_header_size_and_prefers_the_longer_master() -> None:
    from earmark.library.duplicates import DuplicateFile, bitrate_kbps

    # a 1.5 s 48 kHz mono master with a 100 KB metadata chunk, and the same audio trimmed to 1.0 s
    master_kbps = bitrate_kbps("pcm_s16le", 48000, 1, 144_000 + 100_000, 1.5)
    trimmed_kbps = bitrate_kbps("pcm_s16le", 48000, 1, 96_000 + 44, 1.0)
    assert master_kbps == trimmed_kbps == 768.0, "a wav's bitrate depends on its header, not its audio"
    assert bitrate_kbps("pcm_s24le", 96000, 2, 1, 1.0) == 4608.0
    assert bitrate_kbps("pcm_mulaw", 8000, 1, 1, 1.0) == 64.0
    assert bitrate_kbps("mp3float", 44100, 2, 16_000, 1.0) == 128.0

    def file(file_id: int, duration: float, kbps: float | None) -> DuplicateFile:
        return DuplicateFile(
            file_id=file_id,
            path=f"/s/{file_id}.wav",
            duration_s=duration,
            format="wav",
            codec="pcm_s16le",
            sample_rate=48000,
            channels=1,
            size=0,
            bitrate_kbps=kbps,
            lossless=True,
        )

    best = max([file(2, 1.0, trimmed_kbps), file(1, 1.5, master_kbps)], key=DuplicateFile.rank)
    assert best.file_id == 1, "the trimmed copy was suggested as keeper over the full master"
