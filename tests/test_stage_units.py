"""The stage's pure logic: the window cutter and the batch policy (a numpy stand-in model).

The model is beside the point here: the stand-in's embedding is a function of
its window only, so what is checked is grouping, padding, waiting, cancelling
and failures. The real model path is in test_stage.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError

import numpy as np
import pytest

from earmark.stage import BatchPolicy, ModelRunner, WindowCutter, iter_windows, submit_chunks, window_spans


class _NumpyBackend:
    """Features = the window padded with zeros; embedding = normalised window statistics."""

    model_id = "numpy"
    fingerprint = "numpy"
    sample_rate = 100
    window_samples = 1000
    logit_scale = 10.0
    streams = 1

    def __init__(self, batch_size: int = 8, delay_s: float = 0.0, fail_on: float | None = None) -> None:
        self.batch_size = batch_size
        self.calls: list[int] = []
        self.shapes: list[int] = []
        self.delay_s = delay_s
        self.fail_on = fail_on

    def window_features(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(windows), self.window_samples), np.float32)
        for i, w in enumerate(windows):
            out[i, : w.size] = w
        return out

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        self.shapes.append(len(feats))
        self.calls.append(sum(1 for w in feats if w.any()))  # real windows; padding is silence
        time.sleep(self.delay_s)
        if self.fail_on is not None and any(w[0] == self.fail_on for w in feats):
            raise RuntimeError("model failed")
        v = np.array([[w.mean(), w.std(), w.max(), 1.0] for w in feats], np.float32)
        out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_features(self.window_features(windows))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("not used")


def _features(backend: _NumpyBackend, *values: float) -> np.ndarray:
    return backend.window_features([np.full(10, v, np.float32) for v in values])


@pytest.mark.parametrize(
    "n, window, hop, want",
    [
        (0, 10, 5, []),
        (7, 10, 5, [(0, 7)]),
        (10, 10, 5, [(0, 10)]),
        (20, 10, 5, [(0, 10), (5, 15), (10, 20)]),
        (23, 10, 5, [(0, 10), (5, 15), (10, 20), (13, 23)]),
    ],
)
def test_window_spans_short_inputs_and_tails(
    n: int, window: int, hop: int, want: list[tuple[int, int]]
) -> None:
    assert window_spans(n, window, hop) == want, (
        "a short input is one window; the last window reaches the end"
    )


@pytest.mark.parametrize("n", [1, 7, 10, 11, 23, 40, 97])
def test_the_streaming_cutter_gives_the_spans_of_the_whole(n: int) -> None:
    x = np.arange(n, dtype=np.float32)
    for chunk in (1, 3, 10, 64):
        cutter = WindowCutter(window=10, hop=4)
        got = []
        for i in range(0, n, chunk):
            got += [(s, w.tolist()) for s, w in cutter.push(x[i : i + chunk])]
        got += [(s, w.tolist()) for s, w in cutter.finish()]
        want = [(s, x[s:e].tolist()) for s, e in window_spans(n, 10, 4)]
        assert got == want, f"chunks of {chunk}: the live cutter must score what a file would"
        assert [
            s for s, _ in iter_windows((x[i : i + chunk] for i in range(0, n, chunk)), window=10, hop=4)
        ] == [s for s, _ in want]


def test_the_cutter_finishes_each_stretch_of_a_stream_with_gaps() -> None:
    cutter = WindowCutter(window=100, hop=50)
    assert [s for s, _ in cutter.push(np.ones(130, np.float32))] == [0]
    assert [(s, w.size) for s, w in cutter.finish()] == [(30, 100)], "the tail before a gap is scored"
    cutter.reset(5000)  # the clock jumps over the gap
    assert [s for s, _ in cutter.push(np.ones(70, np.float32))] == []
    assert [(s, w.size) for s, w in cutter.finish()] == [(5000, 70)], (
        "a stretch shorter than a window is one window"
    )
    assert list(cutter.finish()) == [], "nothing new, nothing more"


@pytest.mark.slow
def test_calls_have_one_shape_and_results_do_not_depend_on_batching() -> None:
    # the first window holds the model long enough for the rest to queue even on a loaded machine
    backend = _NumpyBackend(delay_s=0.3)
    windows = [np.random.default_rng(i).normal(size=300).astype(np.float32) for i in range(12)]
    alone = [backend.embed_audio([w])[0] for w in windows]
    backend.calls.clear()
    backend.shapes.clear()
    runner = ModelRunner(backend, BatchPolicy(max_wait_s=0))  # type: ignore[arg-type]
    try:
        first = runner.submit(backend.window_features(windows[:1]))  # occupies the model for 300 ms
        time.sleep(0.01)
        rest = [runner.submit(backend.window_features([w])) for w in windows[1:]]
        results = [f.result(5) for f in first + [r[0] for r in rest]]
    finally:
        runner.close()
    assert backend.calls == [1, 8, 3] and backend.shapes == [8, 8, 8], "always one shape: padded"
    for got, want in zip(results, alone, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_policy_may_lower_the_call_shape_but_not_raise_it() -> None:
    backend = _NumpyBackend(batch_size=4)
    assert BatchPolicy().batch_for(backend) == 4  # type: ignore[arg-type]
    assert BatchPolicy(max_batch=2).batch_for(backend) == 2  # type: ignore[arg-type]
    assert BatchPolicy(max_batch=16).batch_for(backend) == 4  # type: ignore[arg-type]


def test_short_calls_wait_only_while_producers_are_at_work() -> None:
    # max_wait is far beyond the hang guards: what ends a wait shows whether the runner waited
    backend = _NumpyBackend(batch_size=2)
    runner = ModelRunner(backend, BatchPolicy(max_wait_s=600))  # type: ignore[arg-type]
    try:
        with runner.producing():
            a = runner.submit(_features(backend, 1.0))
            b = runner.submit(_features(backend, 2.0))  # on its way while `a` waits: one call for both
            a[0].result(60), b[0].result(60)
            assert backend.calls == [2]
        # nobody is on the way: a lone window goes now instead of waiting out max_wait
        runner.submit(_features(backend, 1.0))[0].result(60)
        assert backend.calls == [2, 1]
    finally:
        runner.close()


def test_cancelled_windows_are_skipped_and_failures_reach_their_windows() -> None:
    backend = _NumpyBackend(batch_size=4, delay_s=0.05, fail_on=7.0)
    runner = ModelRunner(backend, BatchPolicy(max_wait_s=0))  # type: ignore[arg-type]
    try:
        busy = runner.submit(_features(backend, 1.0))
        time.sleep(0.01)
        cancelled = runner.submit(_features(backend, 3.0))
        assert cancelled[0].cancel()
        failing = runner.submit(_features(backend, 7.0))
        busy[0].result(5)
        with pytest.raises(RuntimeError, match="model failed"):
            failing[0].result(5)
        with pytest.raises(CancelledError):
            cancelled[0].result(0)
        assert runner.call(lambda: 41 + 1).result(5) == 42, "still serving after a failure"
    finally:
        runner.close()
    assert sum(backend.calls) == 2, "the cancelled window never reached the model"


def test_several_streams_run_model_calls_at_once() -> None:
    backend = _NumpyBackend(batch_size=1, delay_s=0.2)
    backend.streams = 3  # type: ignore[misc]
    running, peak = 0, 0
    lock = threading.Lock()
    inner = backend.embed_features

    def counted(feats: np.ndarray) -> np.ndarray:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return inner(feats)
        finally:
            with lock:
                running -= 1

    backend.embed_features = counted  # type: ignore[method-assign]
    runner = ModelRunner(backend, BatchPolicy(max_wait_s=0))  # type: ignore[arg-type]
    try:
        futures = runner.submit(_features(backend, *range(1, 10)))
        results = [f.result(30) for f in futures]
    finally:
        runner.close()
    assert len(results) == 9 and len(backend.shapes) == 9
    assert peak > 1, "with streams > 1 several batches are in flight"


def test_a_producer_whose_consumer_went_away_stops_handing_windows_to_the_model() -> None:
    """A server request past its deadline (or a closed embed_many) stops cutting its file."""
    backend = _NumpyBackend(batch_size=1)
    runner = ModelRunner(backend, BatchPolicy(max_wait_s=0))  # type: ignore[arg-type]
    stop = threading.Event()

    def chunks() -> Iterator[np.ndarray]:
        for i in range(10):
            if i == 3:
                stop.set()  # the consumer gives up while the fourth window is being cut
            yield np.full(backend.window_samples, i + 1, np.float32)

    try:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the producer's own stop signal
            submit_chunks(runner, chunks(), name="long.wav", window_s=10.0, hop_s=10.0, stop=stop)
    finally:
        runner.close()
    assert sum(backend.calls) <= 3, f"{sum(backend.calls)} of 10 windows reached the model after the stop"


def test_windows_cut_elsewhere_embed_in_the_runners_calls_even_from_a_model_thread() -> None:
    """Refinement's short windows get the vectors every surface gives them, and never deadlock the runner."""
    backend = _NumpyBackend(batch_size=4)
    runner = ModelRunner(backend, BatchPolicy(max_wait_s=0))  # type: ignore[arg-type]
    windows = [np.full(10, v, np.float32) for v in (1.0, 2.0, 3.0, 4.0, 5.0)]
    try:
        direct = runner.embed_windows(windows)
        inside = runner.call(lambda: runner.embed_windows(windows)).result(30)
        queued = np.stack([f.result(30) for f in runner.submit(backend.window_features(windows))])
    finally:
        runner.close()
    np.testing.assert_array_equal(direct, queued, err_msg="embed_windows gave other vectors than the stage")
    np.testing.assert_array_equal(inside, queued, err_msg="on a model thread it gave other vectors")
    assert set(backend.shapes) == {4}, f"calls of other shapes than the backend's batch: {backend.shapes}"


def test_the_audio_module_names_the_one_cutter() -> None:
    """``earmark.audio.window_spans`` (its old home) is the stage's cutter, not a copy."""
    from earmark import audio

    assert audio.window_spans is window_spans and audio.iter_windows is iter_windows


def test_a_server_request_past_its_deadline_stops_feeding_the_model() -> None:
    """A cancelled request (its deadline passed, its client left) leaves the model to the others."""
    import asyncio

    from earmark import Classifier
    from earmark.server.engine import ServingEngine
    from earmark.server.settings import ServerSettings

    backend = _NumpyBackend(batch_size=1)
    clf = Classifier(backend=backend)  # type: ignore[arg-type]
    engine = ServingEngine(clf, ServerSettings(decode_workers=1, max_windows=2000))  # past the default cap
    gate = threading.Event()
    busy = clf.runner.call(gate.wait)  # the model is busy: the request's windows queue up to its limit
    samples = np.ones(backend.sample_rate * 5000, np.float32)  # ~1000 windows at a 5 s hop

    async def give_up() -> None:
        task = asyncio.ensure_future(engine._submit(samples, clf.resolve_options(hop_s=5.0), "long.wav"))
        await asyncio.sleep(0.2)  # not a measurement: the request gives up at some point
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(give_up())
    finally:
        gate.set()
        busy.result(30)
        engine.close()  # waits for the decoding thread
        clf.runner.call(lambda: None).result(30)  # what was queued before this has run (or been skipped)
        clf.runner.close()
    assert sum(backend.calls) <= 8, (
        f"{sum(backend.calls)} windows of a request that gave up reached the model"
    )
