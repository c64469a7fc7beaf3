"""The CLAP engine is correct and deterministic: parity with transformers, batch invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor, ClapModel

from earmark import synth
from helpers import LABELS, encode


@pytest.fixture(scope="module")
def reference(tiny_model: str) -> tuple[ClapModel, ClapFeatureExtractor]:
    """Plain transformers on the same weights: what a single-clip pipeline call computes."""
    return ClapModel.from_pretrained(tiny_model).eval(), ClapFeatureExtractor.from_pretrained(tiny_model)


def _mixed_clips(n: int) -> list[np.ndarray]:
    kinds = list(synth.SOUNDS)
    return [synth.make(kinds[i % len(kinds)], 1.0 + (i * 1.7) % 9, seed=100 + i) for i in range(n)]


def test_short_clip_embedding_equals_single_clip_transformers_reference(classifier, reference) -> None:
    model, fe = reference
    for clip in _mixed_clips(4):
        feats = fe(
            clip, sampling_rate=48_000, return_tensors="pt"
        )  # one clip: the extractor marks it "longer"
        assert bool(feats["is_longer"][0, 0]), "transformers takes the fusion path for a single clip"
        with torch.no_grad():
            want = model.get_audio_features(**feats).pooler_output[0].numpy()
        got = classifier.backend.embed_audio([clip])[0]
        np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.slow
def test_transformers_batch_is_not_batch_invariant_but_earmark_is(classifier, reference) -> None:
    """The reason for the fixed policy: in a transformers batch, one random clip takes the fusion path."""
    model, fe = reference
    clips = _mixed_clips(3)
    alone = classifier.backend.embed_audio(clips[:1])[0]
    np.random.seed(0)
    feats = fe(clips, sampling_rate=48_000, return_tensors="pt")
    assert int(feats["is_longer"].sum()) == 1  # exactly one clip, chosen at random
    for batch_size in (2, 8):  # the smallest and a full CPU batch
        batch = [clips[0], *_mixed_clips(batch_size)[1:]]
        got = classifier.backend.embed_audio(batch)[0]
        np.testing.assert_allclose(got, alone, atol=1e-5)


@pytest.mark.parametrize("batch_size", [2, 8])
def test_every_clip_is_the_same_alone_and_in_a_mixed_batch(classifier, batch_size: int) -> None:
    clips = _mixed_clips(batch_size)
    together = classifier.backend.embed_audio(clips)
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(together[i], classifier.backend.embed_audio([clip])[0], atol=1e-5)
    reordered = classifier.backend.embed_audio(clips[::-1])[::-1]
    np.testing.assert_allclose(reordered, together, atol=1e-5)


@pytest.mark.slow
def test_a_35s_file_gives_identical_scores_twice_and_in_any_order(classifier, tmp_path) -> None:
    long = encode(synth.sequence([("hum", 12), ("clicks", 11), ("chirp", 12)], seed=3), tmp_path / "long.mp3")
    others = [
        encode(synth.make(k, 4, seed=i), tmp_path / f"{k}.wav") for i, k in enumerate(["beep", "noise"])
    ]
    first = classifier.classify(long, LABELS)
    again = classifier.classify(long, LABELS)
    assert first == again
    assert first.duration_s == pytest.approx(35.0, abs=0.05)
    assert [w.start_s for w in first.windows][:6] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert first.windows[-1].end_s == pytest.approx(first.duration_s, abs=1e-3)
    orders = [[long, *others], [others[0], long, others[1]], [*others, long]]
    results = [
        next(p for p in classifier.classify_many(order, LABELS) if p.source == str(long)) for order in orders
    ]
    assert all(r.scores == first.scores and r.windows == first.windows for r in results)


def test_windows_of_long_audio_cover_it_to_the_end(classifier) -> None:
    wave = synth.make("noise", 32.0, seed=1)
    emb = classifier.embed(wave, input_rate=48_000)
    assert emb.spans_s[0] == (0.0, 10.0)
    assert emb.spans_s[-1] == (22.0, 32.0)  # last window aligned to the end
    assert [s for s, _ in emb.spans_s[:-1]] == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert emb.vectors.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)


def test_label_embeddings_are_cached_per_model_template_and_label(classifier, monkeypatch) -> None:
    calls: list[list[str]] = []
    real = classifier.backend.embed_text

    def counting(texts):  # type: ignore[no-untyped-def]
        calls.append(list(texts))
        return real(texts)

    monkeypatch.setattr(classifier.backend, "embed_text", counting)
    wave = synth.make("beep", 3, seed=9)
    labels = ["beep", "hum", "a label never used before"]
    classifier.classify(wave, labels, input_rate=48_000)
    classifier.classify(wave, labels[::-1], input_rate=48_000)
    classifier.classify(wave, labels, input_rate=48_000, templates=("the sound of {label}",))
    encoded = [t for call in calls for t in call]
    assert encoded.count("This is a sound of a label never used before.") == 1
    assert encoded.count("the sound of a label never used before") == 1


def test_several_templates_are_averaged(classifier) -> None:
    t1, t2 = "This is a sound of {label}.", "a recording of {label}"
    both = classifier.text_embeddings(["beep", "hum"], [t1, t2])
    one, two = (
        classifier.text_embeddings(["beep", "hum"], [t1]),
        classifier.text_embeddings(["beep", "hum"], [t2]),
    )
    mean = (one + two) / 2
    np.testing.assert_allclose(both, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)
