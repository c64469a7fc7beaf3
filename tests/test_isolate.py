"""Decoding in worker processes: same results as in-process, and hangs and crashes cost only a worker."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from earmark import audio
from earmark.audio import AudioLimits, AudioWarning
from earmark.audio.isolate import DecoderPool, decode_isolated
from earmark.errors import AudioError, DecoderUnavailable, DecodeTimeout
from helpers import encode

RATE = 48_000


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 1000 * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("isolate")
    whole = encode(tone(4.0), d / "whole.wav")
    cut = d / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    image = d / "image.wav"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    return {
        "ogg": encode(tone(2.0), d / "tone.ogg"),
        "long": encode(tone(180.0, 16_000), d / "three-minutes.flac", rate=16_000),
        "cut": cut,
        "image": image,
        "empty": (d / "empty.mp3"),
    }


@pytest.fixture(scope="module")
def pool() -> Iterator[DecoderPool]:
    with DecoderPool(workers=2, timeout_s=20) as p:
        yield p


def pids(p: DecoderPool) -> set[int]:
    return {w.pid for w in p._live}


def test_a_worker_decodes_exactly_what_the_caller_would(pool: DecoderPool, clips: dict[str, Path]) -> None:
    expected = audio.decode(clips["ogg"], sample_rate=RATE)
    np.testing.assert_array_equal(pool.decode(clips["ogg"], sample_rate=RATE), expected)
    np.testing.assert_array_equal(pool.decode(clips["ogg"].read_bytes(), sample_rate=RATE), expected)
    with clips["ogg"].open("rb") as f:
        np.testing.assert_array_equal(pool.decode(f, sample_rate=RATE, name="upload.ogg"), expected)
    # a long result crosses the pipe in many chunks, straight into one array
    long = pool.decode(clips["long"], sample_rate=16_000)
    np.testing.assert_array_equal(long, audio.decode(clips["long"], sample_rate=16_000))
    assert long.size == 180 * 16_000


def test_warnings_in_the_worker_reach_the_caller(pool: DecoderPool, clips: dict[str, Path]) -> None:
    with pytest.warns(
        AudioWarning, match=rf"^{clips['cut']}: the file ends after 2.0 s but its header says 4.0 s"
    ):
        x = pool.decode(clips["cut"], sample_rate=RATE)
    assert x.size == pytest.approx(2 * RATE, abs=100)


def test_bad_files_get_the_same_errors_and_the_worker_stays(
    pool: DecoderPool, clips: dict[str, Path]
) -> None:
    clips["empty"].write_bytes(b"")
    pool.decode(clips["ogg"], sample_rate=RATE)
    before = pids(pool)
    for key in ("image", "empty"):
        with pytest.raises(AudioError) as in_process:
            audio.decode(clips[key], sample_rate=RATE)
        with pytest.raises(AudioError) as isolated:
            pool.decode(clips[key], sample_rate=RATE)
        assert str(isolated.value) == str(in_process.value)
        assert str(isolated.value).startswith(f"{clips[key]}: ")
    with pytest.raises(AudioError, match=r"^big: is over the 1,000 bytes limit$"):
        pool.decode(
            clips["ogg"].read_bytes(), sample_rate=RATE, name="big", limits=AudioLimits(max_bytes=1000)
        )
    assert pids(pool) == before  # ordinary bad input does not cost a worker


def test_a_hang_is_killed_at_the_deadline(tmp_path: Path, clips: dict[str, Path]) -> None:
    fifo = tmp_path / "never.wav"
    os.mkfifo(fifo)  # opening it blocks until a writer comes: a real hang in the worker
    with DecoderPool(workers=1, timeout_s=30) as p:
        p.decode(clips["ogg"], sample_rate=RATE)
        (hung,) = pids(p)
        start = time.monotonic()
        with pytest.raises(DecodeTimeout) as info:
            p.decode(fifo, sample_rate=RATE, timeout_s=1.0)
        # never before its deadline; well before the pool's 30 s default (a loose bound: a busy machine)
        assert 1.0 <= time.monotonic() - start < 20.0
        assert isinstance(info.value, AudioError)
        assert str(info.value) == f"{fifo}: took longer than 1 s to decode, so it was stopped"
        with pytest.raises(ProcessLookupError):
            os.kill(hung, 0)  # killed and reaped
        np.testing.assert_array_equal(
            p.decode(clips["ogg"], sample_rate=RATE), audio.decode(clips["ogg"], sample_rate=RATE)
        )
        assert hung not in pids(p)


def test_a_crash_becomes_an_audio_error_and_the_pool_goes_on(clips: dict[str, Path]) -> None:
    with DecoderPool(workers=1) as p:
        with pytest.raises(AudioError) as info:
            p._run(clips["ogg"], sample_rate=RATE, name="evil.ogg", timeout_s=None, limits=None, fault="segv")
        assert str(info.value) == "evil.ogg: the decoder crashed on this file (killed by SIGSEGV)"
        assert p.decode(clips["ogg"], sample_rate=RATE).size == 2 * RATE


def test_a_worker_killed_mid_decode_or_while_idle(
    tmp_path: Path, clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    fifo = tmp_path / "slow.wav"
    os.mkfifo(fifo)
    with DecoderPool(workers=1, timeout_s=30) as p:
        p.decode(clips["ogg"], sample_rate=RATE)
        (pid,) = pids(p)
        threading.Timer(1.0, os.kill, (pid, 9)).start()  # the OOM killer, say, while it waits on the FIFO
        start = time.monotonic()
        with pytest.raises(AudioError, match=r"the decoder crashed on this file \(killed by SIGKILL\)$"):
            p.decode(fifo, sample_rate=RATE)
        assert time.monotonic() - start < 20  # noticed when it dies, not at the 30 s deadline
        p.decode(clips["ogg"], sample_rate=RATE)
        (idle,) = pids(p)
        os.kill(idle, 9)
        time.sleep(0.2)
        with caplog.at_level(logging.WARNING, logger="earmark"):
            assert p.decode(clips["ogg"], sample_rate=RATE).size == 2 * RATE  # not the next file's fault
        assert f"decoder worker {idle} died while idle" in caplog.text


def test_many_threads_share_the_workers(pool: DecoderPool, clips: dict[str, Path]) -> None:
    expected = audio.decode(clips["ogg"], sample_rate=RATE)
    pool.decode(clips["ogg"], sample_rate=RATE)
    before = pids(pool)
    results: list[np.ndarray] = []

    def one() -> None:
        results.append(pool.decode(clips["ogg"].read_bytes(), sample_rate=RATE))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 10
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert len(pids(pool)) <= 2 and before <= pids(pool)  # workers were reused, never more than two


def test_start_starts_every_worker_and_decodes_reuse_them(clips: dict[str, Path]) -> None:
    with DecoderPool(workers=3, timeout_s=20) as p:
        assert pids(p) == set()  # workers start when first needed...
        p.start()  # ...or all at once (the server, while it warms up)
        started = pids(p)
        assert len(started) == 3 and all(w.alive() for w in p._live)
        p.start()  # again: nothing more to start
        assert pids(p) == started
        for _ in range(4):
            assert p.decode(clips["ogg"], sample_rate=RATE).size == 2 * RATE
        assert pids(p) == started  # the decodes used the started workers


def test_a_start_that_fails_is_a_typed_error_and_leaves_no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHOME", "/nonexistent")
    with DecoderPool(workers=2, start_timeout_s=20) as p:
        with pytest.raises(DecoderUnavailable, match="did not start"):
            p.start()
        assert pids(p) == set()


def test_urls_and_closed_pools_are_refused(clips: dict[str, Path]) -> None:
    p = DecoderPool(workers=1)
    with pytest.raises(AudioError, match=r"^http://127.0.0.1:9/a.mp3: URLs are not accepted here"):
        p.decode("http://127.0.0.1:9/a.mp3", sample_rate=RATE)
    p.decode(clips["ogg"], sample_rate=RATE)
    (pid,) = pids(p)
    p.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # a typed earmark error that says what happened (the server answers it with 503, not a bare 500)
    with pytest.raises(DecoderUnavailable, match="the audio decoder is shut down"):
        p.decode(clips["ogg"], sample_rate=RATE)


def test_a_decoder_that_cannot_start_is_a_typed_error(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHOME", "/nonexistent")  # the worker's Python dies before it says ready
    with DecoderPool(workers=1) as p, pytest.raises(DecoderUnavailable, match="did not start") as info:
        p.decode(clips["ogg"], sample_rate=RATE)
    assert "exit code 1" in str(info.value) and not isinstance(info.value, AudioError)  # not the file's fault


def test_decode_isolated_one_call(clips: dict[str, Path]) -> None:
    x = decode_isolated(clips["ogg"].read_bytes(), sample_rate=16_000, timeout_s=20, name="clip.ogg")
    np.testing.assert_array_equal(x, audio.decode(clips["ogg"], sample_rate=16_000))
