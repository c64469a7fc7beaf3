"""Label embeddings on disk: a restart with known labels never loads the text tower; an idle
text tower is released and comes back on demand."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from earmark import Classifier, synth
from earmark.backends.clap import ClapBackend
from earmark.backends.onnx import OnnxBackend
from earmark.label_cache import LabelCache

LABELS = ["beep", "hum", "noise"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Path:
    """A home where the tiny model is exported once (from an already loaded PyTorch model)."""
    home = tmp_path_factory.mktemp("labels-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EARMARK_HOME", str(home))
        OnnxBackend(tiny_model, threads=1, source=ClapBackend(tiny_model, device="cpu", threads=1))
    return home


def test_a_restart_with_known_labels_does_not_load_the_text_tower(
    home: Path, tiny_model: str, monkeypatch
) -> None:
    monkeypatch.setenv("EARMARK_HOME", str(home))
    wave = synth.make("beep", 3, seed=4)
    first = Classifier(tiny_model, backend="onnx", threads=1)
    before = first.classify(wave, LABELS, input_rate=48_000)
    assert first.backend.text_loaded  # type: ignore[attr-defined]
    restarted = Classifier(tiny_model, backend="onnx", threads=1)  # a new process's classifier
    after = restarted.classify(wave, LABELS, input_rate=48_000)
    assert not restarted.backend.text_loaded, "the text tower was loaded for labels already embedded"  # type: ignore[attr-defined]
    assert after.label == before.label and after.scores == before.scores
    restarted.classify(wave, [*LABELS, "a label never seen"], input_rate=48_000)
    assert restarted.backend.text_loaded, "a new label was scored without its text embedding"  # type: ignore[attr-defined]


def test_the_cache_is_keyed_by_model_kind_template_and_label(tmp_path: Path) -> None:
    file = tmp_path / "labels.sqlite"
    exact = LabelCache("m-1234", "exact", file)
    exact.put([(("a {label}", "beep"), np.arange(4, dtype=np.float32))])
    assert list(exact.get([("a {label}", "beep")])) == [("a {label}", "beep")]
    assert exact.get([("the {label}", "beep")]) == {}
    assert LabelCache("m-5678", "exact", file).get([("a {label}", "beep")]) == {}, "another model's vector"
    assert LabelCache("m-1234", "onnx-int8", file).get([("a {label}", "beep")]) == {}, (
        "int8 got exact vectors"
    )
    got = LabelCache("m-1234", "exact", file).get([("a {label}", "beep")])
    assert np.array_equal(got[("a {label}", "beep")], np.arange(4, dtype=np.float32))


def test_an_unwritable_cache_is_skipped_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    broken = LabelCache("m", "exact", blocker / "labels.sqlite")
    broken.put([(("t", "l"), np.zeros(2, np.float32))])
    assert broken.get([("t", "l")]) == {}


def test_an_idle_text_tower_is_released_and_loaded_again_on_demand(
    home: Path, tiny_model: str, monkeypatch
) -> None:
    monkeypatch.setenv("EARMARK_HOME", str(home))
    monkeypatch.setenv("EARMARK_TEXT_IDLE_S", "0.2")
    backend = OnnxBackend(tiny_model, threads=1)
    first = backend.embed_text(["beep"])
    assert backend.text_loaded
    deadline = time.monotonic() + 60  # hang guard only
    while backend.text_loaded and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not backend.text_loaded, "the idle text tower was never released"
    assert np.array_equal(backend.embed_text(["beep"]), first)
