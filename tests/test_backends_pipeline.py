"""embed_many: in input order, equal to one-at-a-time embedding, decoding overlapped with the model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earmark import Classifier, synth
from earmark.errors import AudioError
from earmark.stage import embed_many
from helpers import encode


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Mixed real files: short and long, several formats, two broken ones in between."""
    tmp = tmp_path_factory.mktemp("pipeline")
    files = []
    for i, kind in enumerate(["beep", "hum", "noise", "clicks", "chirp", "silence"] * 2):
        ext = [".mp3", ".wav", ".ogg", ".flac"][i % 4]
        files.append(encode(synth.make(kind, 1.5 + (i * 3.7) % 14, seed=i), tmp / f"{kind}-{i}{ext}"))
    files.insert(
        2, encode(synth.sequence([("hum", 12), ("clicks", 11), ("chirp", 12)], seed=3), tmp / "long.mp3")
    )
    (tmp / "text.mp3").write_text("this is not audio\n" * 20)
    files.insert(5, tmp / "text.mp3")
    files.insert(9, tmp / "missing.wav")
    return files


def _sequential(classifier: Classifier, files: Sequence[Path]) -> list[Any]:
    out: list[Any] = []
    for f in files:
        try:
            out.append(classifier.embed(f))
        except AudioError as ex:
            out.append(ex)
    return out


def test_results_come_in_input_order_and_equal_one_at_a_time(
    classifier: Classifier, folder: list[Path]
) -> None:
    want = _sequential(classifier, folder)
    got = list(embed_many(classifier, folder))
    assert [s for s, _ in got] == folder
    for (_, g), w in zip(got, want, strict=True):
        if isinstance(w, AudioError):
            assert isinstance(g, AudioError) and str(g) == str(w)
            continue
        assert not isinstance(g, AudioError)
        assert g.source == w.source and g.spans_s == w.spans_s
        assert g.duration_s == w.duration_s and g.sample_rate == w.sample_rate
        np.testing.assert_allclose(g.vectors, w.vectors, atol=1e-5)
    errors = [str(g) for _, g in got if isinstance(g, AudioError)]
    assert len(errors) == 2 and "no such file" in errors[1] and "text.mp3" in errors[0]


def test_a_long_file_keeps_all_its_windows(classifier: Classifier, folder: list[Path]) -> None:
    ((_, emb),) = embed_many(classifier, [folder[2]])
    assert not isinstance(emb, AudioError)
    assert emb.duration_s == pytest.approx(35.0, abs=0.05) and len(emb.spans_s) == 6
    assert emb.spans_s[-1][1] == pytest.approx(emb.duration_s, abs=1e-3)


class _Watched:
    """The real backend, recording which thread extracts features and when the model runs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.feature_calls: list[tuple[str, float, float]] = []
        self.model_calls: list[tuple[str, float, float, int]] = []
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def window_features(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.window_features(windows)
        with self.lock:
            self.feature_calls.append((threading.current_thread().name, t0, time.perf_counter()))
        return np.asarray(out)

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        time.sleep(0.05)  # a slow model, as the full-size one is: decoding must go on meanwhile
        out = self.inner.embed_features(feats)
        with self.lock:
            self.model_calls.append((threading.current_thread().name, t0, time.perf_counter(), len(feats)))
        return np.asarray(out)


def test_decoding_and_features_run_beside_the_model(classifier: Classifier, folder: list[Path]) -> None:
    watched = _Watched(classifier.backend)
    clf = Classifier(backend=watched, options=classifier.options)  # type: ignore[arg-type]
    files = [f for f in folder if f.suffix in (".wav", ".flac") and f.exists()]
    results = list(embed_many(clf, files))
    assert all(not isinstance(e, AudioError) for _, e in results)
    # the model runs in the runner's thread, features in the decoding threads
    assert {name for name, _, _, _ in watched.model_calls} == {"earmark-model-0"}
    assert all(name.startswith("earmark-decode") for name, _, _ in watched.feature_calls)
    overlapping = [
        f for f in watched.feature_calls for m in watched.model_calls if f[1] < m[2] and m[1] < f[2]
    ]
    assert overlapping, "no feature extraction ran while the model was busy"
    assert sum(n for *_, n in watched.model_calls) == sum(len(e.spans_s) for _, e in results)  # type: ignore[union-attr]


def test_sources_are_read_lazily_a_few_ahead(classifier: Classifier, folder: list[Path]) -> None:
    pulled = 0

    def sources() -> Iterator[Path]:
        nonlocal pulled
        for f in folder:
            pulled += 1
            yield f

    gen = embed_many(classifier, sources(), workers=2)
    next(gen)
    assert pulled <= 5  # the first result needs only the first source and a few queued behind it
    gen.close()


def test_stopping_early_leaves_no_worker_behind(classifier: Classifier, folder: list[Path]) -> None:
    gen = embed_many(classifier, folder * 3)
    for _ in range(2):
        next(gen)
    gen.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        t.name.startswith("earmark-decode") for t in threading.enumerate()
    ):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("earmark-decode")]
