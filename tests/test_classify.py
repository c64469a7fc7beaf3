"""End to end through the real model path with the tiny trained CLAP model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import earmark
from earmark import ClassifyOptions, synth
from earmark.errors import AudioError, ConfigError, LabelError
from helpers import LABELS, encode, sound_file


def test_a_beep_mp3_is_classified_beep_above_threshold(classifier, tmp_path) -> None:
    p = classifier.classify(sound_file(tmp_path, "beep", 4, ".mp3", seed=11), "beep, hum, noise, clicks")
    assert p.label == "beep"
    assert not p.uncertain and p.top.probability >= 0.7
    assert p.labels == ("beep", "hum", "noise", "clicks")
    assert [s.label for s in p.scores][0] == "beep"
    assert sum(s.probability for s in p.scores) == pytest.approx(1.0, abs=1e-5)
    assert p.duration_s == pytest.approx(4.0, abs=0.05)
    assert p.sample_rate == 48_000


@pytest.mark.parametrize("kind", ["noise", "hum", "chirp", "clicks"])
def test_each_known_sound_gets_its_own_label(classifier, tmp_path, kind: str) -> None:
    p = classifier.classify(sound_file(tmp_path, kind, 6, ".ogg", seed=21), LABELS)
    assert p.label == kind


def test_30s_hum_clicks_beep_gives_a_timeline_with_boundaries_near_10_and_20(classifier, tmp_path) -> None:
    wave = synth.sequence([("hum", 10), ("clicks", 10), ("beep", 10)], seed=7)
    p = classifier.classify(encode(wave, tmp_path / "three.flac"), LABELS)
    assert [s.label for s in p.timeline] == ["hum", "clicks", "beep"]
    hop = 5.0
    hum, clicks, beep = p.timeline
    assert hum.start_s == 0.0 and beep.end_s == pytest.approx(30.0, abs=0.05)
    assert abs(hum.end_s - 10) <= hop and abs(clicks.start_s - 10) <= hop
    assert abs(clicks.end_s - 20) <= hop and abs(beep.start_s - 20) <= hop
    assert all(s.score >= 0.7 for s in p.timeline)


def test_noise_then_clicks_puts_the_boundary_in_the_right_place(classifier) -> None:
    wave = synth.sequence([("noise", 15), ("clicks", 15)], seed=2)
    p = classifier.classify(wave, LABELS, input_rate=48_000, hop_s=2.5)
    labels = [s.label for s in p.timeline]
    assert labels == ["noise", "clicks"]
    assert abs(p.timeline[0].end_s - 15) <= 2.5 and abs(p.timeline[1].start_s - 15) <= 2.5


def test_ambiguous_labels_are_uncertain_not_a_guess(classifier) -> None:
    """The tiny model learned "beep" and "tone" for the same sound: neither reaches 0.7."""
    p = classifier.classify(synth.make("beep", 5, seed=4), ["beep", "tone"], input_rate=48_000)
    assert p.uncertain and p.label is None
    assert p.to_dict()["label"] is None and p.to_dict()["uncertain"] is True
    assert 0.3 < p.top.probability < 0.7


def test_labels_the_model_never_learned_give_uncertain(classifier) -> None:
    p = classifier.classify(synth.make("beep", 5, seed=4), ["guitar", "piano", "violin"], input_rate=48_000)
    assert p.uncertain


def test_threshold_changes_the_answer_not_the_scores(classifier) -> None:
    wave = synth.make("beep", 5, seed=4)
    strict = classifier.classify(wave, ["beep", "tone"], input_rate=48_000, threshold=0.7)
    lax = classifier.classify(wave, ["beep", "tone"], input_rate=48_000, threshold=0.4)
    assert strict.scores == lax.scores
    assert strict.label is None and lax.label == lax.top.label


def test_top_k_and_max_aggregate(classifier) -> None:
    wave = synth.sequence([("silence", 10), ("beep", 10)], seed=3)
    mean = classifier.classify(wave, LABELS, input_rate=48_000, top_k=2)
    peak = classifier.classify(wave, LABELS, input_rate=48_000, aggregate="max")
    assert len(mean.top_scores) == 2 and len(mean.to_dict()["top_k"]) == 2
    beep_mean = next(s.probability for s in mean.scores if s.label == "beep")
    beep_max = next(s.probability for s in peak.scores if s.label == "beep")
    assert beep_max > beep_mean and beep_max > 0.9


def test_arrays_need_their_sample_rate(classifier) -> None:
    with pytest.raises(AudioError, match="needs its sample rate"):
        classifier.classify(synth.make("beep", 2), LABELS)


def test_arrays_at_other_rates_and_int16_are_resampled(classifier) -> None:
    wave44 = synth.make("beep", 4, seed=8, rate=44_100)
    as_int16 = (wave44 * 32767).astype(np.int16)
    a = classifier.classify(wave44, LABELS, input_rate=44_100)
    b = classifier.classify(as_int16, LABELS, input_rate=44_100)
    assert a.label == b.label == "beep"
    assert a.duration_s == pytest.approx(4.0, abs=0.01)


def test_bytes_and_file_objects_classify_like_the_path(classifier, tmp_path) -> None:
    path = sound_file(tmp_path, "chirp", 3, ".m4a", seed=5)
    by_path = classifier.classify(path, LABELS)
    by_bytes = classifier.classify(path.read_bytes(), LABELS, name="upload.m4a")
    with open(path, "rb") as f:
        by_file = classifier.classify(f, LABELS)
    assert by_path.scores == by_bytes.scores == by_file.scores
    assert by_bytes.source == "upload.m4a"


@pytest.mark.parametrize(
    "labels, message",
    [
        ("beep", "at least 2 labels"),
        ("", "no labels given: name at least 2"),
        (["beep", " ", "BEEP"], "at least 2 labels"),
        ([f"label {i}" for i in range(1001)], "at most 1000"),
        (["beep", "x" * 201], "201 characters; at most 200"),
    ],
)
def test_unusable_label_lists_are_clear_errors(classifier, labels, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        classifier.classify(synth.make("beep", 1), labels, input_rate=48_000)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"window_s": 12.0}, "window_s"),
        ({"hop_s": 0.0}, "hop_s"),
        ({"threshold": 1.5}, "threshold"),
        ({"templates": ("no placeholder",)}, "placeholder"),
        ({"top_k": 0}, "top_k"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_options_are_config_errors(classifier, overrides, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        classifier.classify(synth.make("beep", 1), LABELS, input_rate=48_000, **overrides)


def test_shorter_windows_are_allowed(classifier) -> None:
    p = classifier.classify(synth.make("hum", 12), LABELS, input_rate=48_000, window_s=4, hop_s=2)
    assert p.label == "hum" and len(p.windows) == 5
    assert p.windows[-1].end_s == pytest.approx(12.0)


def test_result_to_dict_is_json_ready(classifier) -> None:
    p = classifier.classify(synth.make("hum", 3), LABELS, input_rate=48_000, options=ClassifyOptions(top_k=2))
    d = json.loads(json.dumps(p.to_dict(windows=True)))
    assert d["label"] == "hum" and d["top"]["label"] == "hum"
    assert set(d["scores"]) == set(LABELS) and len(d["windows"]) == 1
    assert d["timeline"] == [{"label": "hum", "start_s": 0.0, "end_s": 3.0, "score": d["top"]["probability"]}]


def test_one_shot_classify(tiny_model, tmp_path) -> None:
    p = earmark.classify(sound_file(tmp_path, "noise", 2, ".wav"), ["noise", "beep"], model=tiny_model)
    assert p.label == "noise" and p.model == tiny_model


def test_import_earmark_does_not_import_torch() -> None:
    code = "import sys, earmark; bad = {'torch', 'transformers', 'gradio', 'fastapi', 'ray'} & set(sys.modules); print(sorted(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_labels_vector_does_not_depend_on_the_labels_beside_it(tiny_model) -> None:
    # two fresh classifiers (no shared cache): "beep" asked alone, then among others in another order
    template = ("This is a sound of {label}.",)
    alone = earmark.Classifier(tiny_model, backend="torch", persist_labels=False).text_embeddings(
        ["beep"], template
    )
    among = earmark.Classifier(tiny_model, backend="torch", persist_labels=False).text_embeddings(
        ["a long label of several words", "hum", "beep", "noise"], template
    )
    np.testing.assert_array_equal(alone[0], among[2], err_msg="the label's vector changed with its company")
