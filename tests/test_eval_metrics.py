"""Pure metrics (earmark.evaluate.metrics) and pure few-shot heads (earmark.adapt.fewshot): hand-made numbers, no model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from earmark.adapt import fewshot
from earmark.evaluate.metrics import (
    compute_metrics,
    confusion_matrix,
    coverage_curve,
    most_confused,
    stratified_folds,
    top_k_accuracy,
)

LABELS = ("a", "b", "c", "d")
# 6 items; answers (arg-max): a, b, b, c, a, d ; truth: a, b, a, c, c, d
PROBS = np.array(
    [
        [0.90, 0.05, 0.03, 0.02],
        [0.10, 0.80, 0.05, 0.05],
        [0.30, 0.60, 0.05, 0.05],
        [0.10, 0.10, 0.75, 0.05],
        [0.40, 0.05, 0.35, 0.20],
        [0.10, 0.10, 0.10, 0.70],
    ]
)
TRUE = [0, 1, 0, 2, 2, 3]


def test_metrics_match_a_hand_count() -> None:
    m = compute_metrics(TRUE, PROBS, LABELS, threshold=0.7)
    assert m.n == 6
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.confusion == ((1, 1, 0, 0), (0, 1, 0, 0), (1, 0, 1, 0), (0, 0, 0, 1))
    per = {c.label: c for c in m.per_class}
    assert (per["a"].precision, per["a"].recall) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (per["b"].precision, per["b"].recall) == (pytest.approx(0.5), 1.0)
    assert (per["c"].precision, per["c"].recall) == (1.0, pytest.approx(0.5))
    assert (per["d"].support, per["d"].predicted, per["d"].f1) == (1, 1, 1.0)
    f1 = [0.5, 2 / 3, 2 / 3, 1.0]
    assert m.macro_f1 == pytest.approx(sum(f1) / 4)
    # top-3: item 2 (true a at 0.30, second) and item 4 (true c at 0.35, second) are inside
    assert m.top3 == 1.0
    assert m.top5 is None  # only 4 classes: top-5 says nothing
    # at 0.7: items 0, 1, 3, 5 answered (0.9, 0.8, 0.75, 0.7), all right
    assert (m.at_threshold.answered, m.at_threshold.correct) == (4, 4)
    assert m.at_threshold.accuracy == 1.0 and m.at_threshold.coverage == pytest.approx(4 / 6)
    assert m.confused_pairs == (("a", "b", 1), ("c", "a", 1))
    d = m.to_dict()
    assert d["confusion"]["rows_true_columns_answer"][2] == [1, 0, 1, 0]
    assert d["confused_pairs"][0] == {"true": "a", "answer": "b", "count": 1}


def test_top_k_ties_count_the_earlier_class_first() -> None:
    p = np.array([[0.5, 0.5, 0.0]])
    assert top_k_accuracy([0], p, 1) == 1.0
    assert top_k_accuracy([1], p, 1) == 0.0
    assert top_k_accuracy([1], p, 2) == 1.0


def test_coverage_curve_is_monotone_on_random_scores() -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(500, 5)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 5, size=500)
    curve = coverage_curve(y, probs)
    cov = [pt.coverage for pt in curve]
    assert [pt.threshold for pt in curve] == sorted(pt.threshold for pt in curve)
    assert all(a >= b for a, b in itertools.pairwise(cov))
    assert cov[0] == 1.0 and cov[-1] < 0.5
    assert all(pt.correct <= pt.answered for pt in curve)
    assert all(pt.correct_of_all == pytest.approx(pt.correct / 500) for pt in curve)


def test_confusion_and_most_confused() -> None:
    cm = confusion_matrix([0, 0, 1, 1, 1, 2], [1, 1, 0, 1, 2, 2], 3)
    assert cm.tolist() == [[0, 2, 0], [1, 1, 1], [0, 0, 1]]
    assert most_confused(cm, ["x", "y", "z"]) == (("x", "y", 2), ("y", "x", 1), ("y", "z", 1))
    assert most_confused(cm, ["x", "y", "z"], limit=1) == (("x", "y", 2),)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="true classes"):
        compute_metrics([0, 1], np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        compute_metrics([0, 5], np.zeros((2, 2)), ["a", "b"])


def test_stratified_folds_are_balanced_and_deterministic() -> None:
    y = [0] * 10 + [1] * 7 + [2] * 3
    folds = stratified_folds(y, 5)
    assert folds.tolist() == stratified_folds(y, 5).tolist()
    for c in range(3):
        counts = np.bincount(folds[np.asarray(y) == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(folds).tolist() == [4, 4, 4, 4, 4]
    with pytest.raises(ValueError):
        stratified_folds(y, 1)


def _clusters(seed: int, n_per: int, spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(16, 3)))[0].T  # 3 orthonormal directions in 16-d
    x = np.concatenate([centres[c] + spread * rng.normal(size=(n_per, 16)) for c in range(3)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.repeat(np.arange(3), n_per), centres


def test_heads_are_deterministic_and_logreg_fits_better_than_prototypes() -> None:
    x, y, _ = _clusters(1, 30, 0.45)
    opts = fewshot.FitOptions(method="logreg", text_prior=0.0)
    a = fewshot.fit_directions(x, y, 3, text=None, scale=20.0, options=opts)
    b = fewshot.fit_directions(x, y, 3, text=None, scale=20.0, options=opts)
    assert np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)
    proto = fewshot.fit_directions(
        x, y, 3, text=None, scale=20.0, options=fewshot.FitOptions(method="prototype")
    )

    def loss(w: np.ndarray) -> float:
        p = fewshot.probabilities(x @ w.T, 20.0, None)
        return float(-np.log(p[np.arange(y.size), y]).mean())

    assert loss(a) < loss(proto) - 0.01


def test_text_prior_pulls_prototypes_towards_the_label_text() -> None:
    x, y, centres = _clusters(2, 2, 0.3)
    text = np.roll(centres, 1, axis=0)  # deliberately pointing elsewhere
    weak = fewshot.fit_directions(
        x, y, 3, text=text, scale=20.0, options=fewshot.FitOptions(method="prototype", text_prior=0.5)
    )
    strong = fewshot.fit_directions(
        x, y, 3, text=text, scale=20.0, options=fewshot.FitOptions(method="prototype", text_prior=20.0)
    )
    assert (np.sum(strong * text, axis=1) > np.sum(weak * text, axis=1)).all()


def test_reject_column_lowers_probabilities_only_for_far_away_sounds() -> None:
    cos = np.array([[0.9, 0.1], [0.2, 0.1]])
    p = fewshot.probabilities(cos, 30.0, reject=0.6)
    assert p[0, 0] > 0.99  # near its class: the reject column hardly matters
    assert p[1].max() < 0.01  # far from everything: "none of these" takes the mass
    own = np.array([[0.95, 0.1], [0.9, 0.2], [0.2, 0.85]])
    floor = fewshot.reject_cosine(own, [0, 0, 1], 30.0, 0.05)
    assert floor is not None and floor < 0.85
    assert fewshot.reject_cosine(own, [0, 0, 1], 30.0, 0.0) is None
