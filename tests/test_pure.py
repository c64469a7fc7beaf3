"""Pure logic: labels, scoring, timeline, window spans (no model)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from earmark.errors import LabelError
from earmark.labels import parse_labels
from earmark.scoring import window_scores
from earmark.stage.windows import iter_windows, window_spans
from earmark.timeline import segments


def test_labels_from_strings_lists_and_files(tmp_path, caplog) -> None:
    f = tmp_path / "l.txt"
    f.write_text("siren\n# comment\nDog  barking\n")
    with caplog.at_level(logging.WARNING, logger="earmark"):
        labels = parse_labels("dog barking, glass breaking\n", ["smoke alarm", "Glass Breaking"], f)
    assert labels == ("dog barking", "glass breaking", "smoke alarm", "siren")
    assert "duplicate labels ignored: Glass Breaking, Dog barking" in caplog.text


def test_label_floods_are_refused_early() -> None:
    with pytest.raises(LabelError, match="at most 1000"):
        parse_labels(",".join(["x"] * 10_000))


def test_softmax_scores_follow_the_reference_formula() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 8))
    t = rng.standard_normal((4, 8))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    probs, cos = window_scores(a, t, 33.4)
    logits = a @ t.T * 33.4
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, want, rtol=1e-12)
    np.testing.assert_allclose(cos, a @ t.T)


@pytest.mark.parametrize(
    "n, window, hop, want",
    [
        (5, 10, 5, [(0, 5)]),
        (10, 10, 5, [(0, 10)]),
        (20, 10, 5, [(0, 10), (5, 15), (10, 20)]),
        (23, 10, 5, [(0, 10), (5, 15), (10, 20), (13, 23)]),
    ],
)
def test_window_spans_cover_the_end(n: int, window: int, hop: int, want) -> None:
    assert window_spans(n, window, hop) == want


@pytest.mark.parametrize("n", [1, 7, 10, 11, 23, 40, 97])
@pytest.mark.parametrize("chunk", [1, 3, 10, 64])
def test_streamed_windows_equal_the_spans_of_the_whole(n: int, chunk: int) -> None:
    x = np.arange(n, dtype=np.float32)
    chunks = (x[i : i + chunk] for i in range(0, n, chunk))
    got = [(s, w.tolist()) for s, w in iter_windows(chunks, window=10, hop=4)]
    want = [(s, x[s:e].tolist()) for s, e in window_spans(n, 10, 4)]
    assert got == want


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


def test_timeline_boundaries_land_where_the_sound_changes() -> None:
    spans = [(0, 10), (5, 15), (10, 20), (15, 25), (20, 30)]
    # hum, then a mixed window that leans to clicks, clicks, a mixed one, beep
    probs = _probs([[1, 0, 0], [0.05, 0.95, 0], [0, 0.95, 0.05], [0, 0.45, 0.55], [0, 0, 1]])
    segs = segments(["hum", "clicks", "beep"], spans, probs, [0.7] * 3)
    assert [(s.label, s.start_s, s.end_s) for s in segs] == [
        ("hum", 0, 10),
        ("clicks", 10, 20),
        ("beep", 20, 30),
    ]
    assert segs[0].score == 1.0


def test_timeline_leaves_uncertain_stretches_empty() -> None:
    spans = [(0, 10), (5, 15)]
    probs = _probs([[0.5, 0.5], [0.9, 0.1]])
    segs = segments(["a", "b"], spans, probs, [0.95, 0.95])
    assert segs == ()
    segs = segments(["a", "b"], spans, probs, [0.8, 0.8])
    assert [(s.label, s.start_s, s.end_s) for s in segs] == [("a", 5, 15)]


def test_per_label_thresholds_apply() -> None:
    probs = _probs([[0.6, 0.4]])
    assert segments(["a", "b"], [(0, 4)], probs, [0.7, 0.7]) == ()
    assert [s.label for s in segments(["a", "b"], [(0, 4)], probs, [0.5, 0.7])] == ["a"]
