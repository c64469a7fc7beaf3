"""Calibration and few-shot packs with the tiny model: calibrate, fit, classify --thresholds/--pack.

The tiny model knows six synthetic sounds; these tests check the machinery
(thresholds reach their target on held-out files, a pack learns what the text
side cannot name), not the accuracy of CLAP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from earmark import Classifier, synth
from earmark.adapt.calibrate import calibrate, held_out_check, load_thresholds, save_thresholds
from earmark.adapt.packs import load_pack
from earmark.cli import cli
from earmark.errors import ConfigError, LabelError
from helpers import labelled_folder


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _alarm_files(seed: int, n: int) -> dict[str, list[np.ndarray]]:
    """3 s files of 1 s beep/hum pieces; a file is "beep" if it holds ANY beep (did the alarm sound?).

    Scored with 1 s windows and the mean over windows, a file with one beep
    second in three reads "hum" at about 0.67: wrong, and less confident than
    the all-hum files that are right. Calibration has to find that gap.
    """
    out: dict[str, list[np.ndarray]] = {"beep": [], "hum": []}
    for i in range(n):
        k = (0, 1, 0, 2, 3)[i % 5]  # beep seconds
        order = np.random.default_rng([seed, i]).permutation(3)
        wave = synth.sequence(
            [("beep" if order[j] < k else "hum", 1.0) for j in range(3)], seed=seed * 100 + i
        )
        out["beep" if k else "hum"].append(wave)
    return out


def _precision(lines: list[dict[str, object]]) -> tuple[float, int]:
    answered = [d for d in lines if d["label"] is not None]
    right = sum(Path(str(d["source"])).parent.name == d["label"] for d in answered)
    return right / max(len(answered), 1), len(answered)


@pytest.mark.slow
def test_calibrated_thresholds_hit_the_target_precision_on_held_out_files(
    tiny_model: str, tmp_path: Path
) -> None:
    cal_dir = labelled_folder(tmp_path / "cal", _alarm_files(1, 15))
    held_dir = labelled_folder(tmp_path / "held", _alarm_files(2, 15))
    common = ["-m", tiny_model, "--threads", "1", "--window-s", "1", "--hop-s", "1"]
    code, out, err = _run(["calibrate", str(cal_dir), "-p", "0.9", "-o", str(tmp_path / "t.json"), *common])
    assert code == 0, err
    assert "held out (" in out and "wrote" in out
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["format"] == "earmark-thresholds" and doc["target_precision"] == 0.9
    assert doc["labels"]["hum"]["threshold"] > 0.67  # above the one-beep-in-three files

    code, out, err = _run(
        [
            "classify",
            str(held_dir),
            "-l",
            "beep, hum",
            "--json",
            "-t",
            "0.5",
            "--thresholds",
            str(tmp_path / "t.json"),
            *common,
        ]
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 15
    plain = [{**d, "label": d["top"]["label"] if d["top"]["probability"] >= 0.5 else None} for d in lines]
    before, n_before = _precision(plain)
    after, n_after = _precision(lines)
    assert before < 0.9  # the plain threshold misses the target on these files
    assert after >= 0.9 and n_after >= 9  # calibrated: on target, and still answering most files
    assert n_after < n_before


def test_calibration_statuses_and_cross_validated_check() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    y = rng.integers(0, 3, size=n)
    right = rng.random(n) < 0.7
    pred = np.where(right, y, (y + 1 + rng.integers(0, 2, size=n)) % 3)
    top = np.where(right, rng.uniform(0.5, 1.0, n), rng.uniform(0.34, 0.75, n))
    probs = np.full((n, 3), 0.0)
    probs[np.arange(n), pred] = top
    probs[np.arange(n), (pred + 1) % 3] = 1 - top
    half = n // 2
    cal = calibrate(y[:half], probs[:half], ["a", "b", "c"], target_precision=0.95)
    th = [cal.labels[k].threshold for k in "abc"]
    test_p, test_y = probs[half:], y[half:]
    answered = test_p.max(axis=1) >= np.asarray(th)[test_p.argmax(axis=1)]
    assert (
        ((test_p.argmax(axis=1) == test_y)[answered]).mean() >= 0.94
    )  # held out, 2000 items: close to target
    assert all(cal.labels[k].status == "reached" for k in "abc")
    held = held_out_check(y, probs, ["a", "b", "c"], target_precision=0.95)
    assert held["folds"] == 5 and held["precision"] >= 0.94 and 0.2 < held["coverage"] < 0.9
    # a label never answered keeps the default; one always wrong is unreachable
    p = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]])
    odd = calibrate([1, 1], p, ["a", "b", "c"], target_precision=0.9, default_threshold=0.6)
    assert (odd.labels["a"].status, odd.labels["a"].threshold) == ("unreachable", 1.0)
    assert (odd.labels["c"].status, odd.labels["c"].threshold) == ("no data", 0.6)


def test_thresholds_file_round_trip_and_errors(tmp_path: Path) -> None:
    cal = calibrate([0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]), ["x", "y"], target_precision=0.9)
    save_thresholds(cal, tmp_path / "t.json", model="m", templates=["{label}"])
    assert load_thresholds(tmp_path / "t.json") == (("x", 0.7), ("y", 0.7))
    (tmp_path / "plain.json").write_text('{"smoke alarm": 0.55, "dog": 0.8}')
    assert load_thresholds(tmp_path / "plain.json") == (("smoke alarm", 0.55), ("dog", 0.8))
    (tmp_path / "bad.json").write_text('{"dog": 1.5}')
    with pytest.raises(ConfigError, match="threshold of 'dog' must be a number between 0 and 1"):
        load_thresholds(tmp_path / "bad.json")
    (tmp_path / "new.json").write_text('{"format": "earmark-thresholds", "version": 99, "labels": {}}')
    with pytest.raises(ConfigError, match="version 99"):
        load_thresholds(tmp_path / "new.json")
    (tmp_path / "pack.json").write_text('{"format": "earmark-pack"}')
    with pytest.raises(ConfigError, match="not a thresholds file"):
        load_thresholds(tmp_path / "pack.json")


def test_pack_beats_zero_shot_on_labels_the_text_side_confuses(
    nonsense_sets: tuple[Path, Path, Path], tiny_model: str, tmp_path: Path
) -> None:
    train, held, label_map = nonsense_sets
    common = ["-m", tiny_model, "--threads", "1", "--label-map", str(label_map)]
    code, out, err = _run(
        ["fit", str(train), "-o", str(tmp_path / "ab.pack.json"), "--target-precision", "0.9", *common]
    )
    assert code == 0, err
    assert "examples: class A 5, class B 5, noise 5" in out
    pack = load_pack(tmp_path / "ab.pack.json")
    assert pack.labels == ("class A", "class B", "noise") and pack.training["cv_accuracy"] == 1.0
    assert pack.training["zero_shot_accuracy"] < 0.9
    code, out, err = _run(
        [
            "eval",
            str(held),
            "--pack",
            str(tmp_path / "ab.pack.json"),
            "-o",
            str(tmp_path / "r"),
            "--no-plots",
            "--no-baseline",
            *common,
        ]
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    zero, packed = doc["variants"]
    assert (zero["kind"], packed["kind"], packed["name"]) == ("zero-shot", "pack", "pack ab.pack")
    zs_ab = {c["label"]: c["recall"] for c in zero["metrics"]["per_class"]}
    pk_ab = {c["label"]: c["recall"] for c in packed["metrics"]["per_class"]}
    assert min(zs_ab["class A"], zs_ab["class B"]) < 0.7  # the text side cannot tell them apart
    assert pk_ab["class A"] == pk_ab["class B"] == 1.0
    assert packed["metrics"]["accuracy"] > zero["metrics"]["accuracy"] + 0.2
    assert packed["own_thresholds"]["precision"] >= 0.9


def test_pack_classifies_known_sounds_and_leaves_unknown_ones_uncertain(
    nonsense_sets: tuple[Path, Path, Path], tiny_model: str, tmp_path: Path
) -> None:
    train, held, label_map = nonsense_sets
    code, _, err = _run(
        [
            "fit",
            str(train),
            "-o",
            str(tmp_path / "p.json"),
            "--method",
            "prototype",
            "-m",
            tiny_model,
            "--threads",
            "1",
            "--label-map",
            str(label_map),
            "--json",
        ]
    )
    assert code == 0, err
    unknown = labelled_folder(
        tmp_path / "unknown", {k: [synth.make(k, 1.0, seed=7)] for k in ("chirp", "clicks", "silence")}
    )
    code, out, err = _run(
        [
            "classify",
            str(held / "class_a"),
            str(held / "class_b"),
            str(unknown),
            "--pack",
            str(tmp_path / "p.json"),
            "--json",
            "-m",
            tiny_model,
            "--threads",
            "1",
        ]
    )
    assert code == 0, err
    results = {Path(d["source"]).name: d for d in map(json.loads, out.splitlines())}
    assert len(results) == 19
    assert all(d["labels"] == ["class A", "class B", "noise"] for d in results.values())
    known = {n: d["label"] for n, d in results.items() if n.startswith("class_")}
    expected = {n: "class A" if n.startswith("class_a") else "class B" for n in known}
    # never a wrong name; an odd held-out beep unlike the five it learned from may be uncertain
    assert all(known[n] in (expected[n], None) for n in known)
    assert sum(known[n] == expected[n] for n in known) >= 14
    for name in ("chirp-0.wav", "clicks-0.wav", "silence-0.wav"):
        assert results[name]["label"] is None and results[name]["uncertain"], (
            name,
            results[name],
        )  # never seen


def test_pack_library_api_and_file_checks(
    nonsense_sets: tuple[Path, Path, Path], classifier: Classifier, tiny_model: str, tmp_path: Path
) -> None:
    train, held, label_map = nonsense_sets
    code, _, err = _run(
        [
            "fit",
            str(train),
            "-o",
            str(tmp_path / "p.json"),
            "-m",
            tiny_model,
            "--threads",
            "1",
            "--label-map",
            str(label_map),
        ]
    )
    assert code == 0, err
    pack = load_pack(tmp_path / "p.json")
    path = str(held / "class_b" / "class_b-0.wav")
    emb = classifier.embed(path)
    via_pack = pack.predict(emb)
    assert via_pack.label == "class B" and [w.probabilities for w in via_pack.windows]
    assert classifier.classify(path, pack=pack) == classifier.score(emb, pack=pack) == via_pack
    many = list(classifier.classify_many([path, str(held / "missing.wav")], pack=pack))
    assert many[0] == via_pack and "missing.wav" in str(many[1])  # a bad file is reported, the rest go on
    np.testing.assert_allclose(
        pack.window_probabilities(emb.vectors), [w.probabilities for w in via_pack.windows], atol=1e-6
    )
    assert len(via_pack.windows[0].probabilities) == 3 and via_pack.to_dict()["label"] == "class B"
    with pytest.raises(LabelError, match="scores its own labels"):
        classifier.classify(path, ["x", "y"], pack=pack)
    with pytest.raises(LabelError, match="no labels given"):
        classifier.classify(path)
    doc = json.loads((tmp_path / "p.json").read_text())
    doc["text"]["base64"] = json.loads((tmp_path / "p.json").read_text())["directions"]["base64"]
    (tmp_path / "other-model.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="was fitted on .*computes different embeddings"):
        classifier.classify(path, pack=load_pack(tmp_path / "other-model.json"))
    doc["version"] = 2
    (tmp_path / "future.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="pack version 2"):
        load_pack(tmp_path / "future.json")
    (tmp_path / "thresholds.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a classifier pack"):
        load_pack(tmp_path / "thresholds.json")


def test_eval_refuses_a_pack_for_other_labels_before_embedding(
    nonsense_sets: tuple[Path, Path, Path], tiny_model: str, tmp_path: Path
) -> None:
    train, held, label_map = nonsense_sets
    code, _, err = _run(
        [
            "fit",
            str(train),
            "-o",
            str(tmp_path / "p.json"),
            "-m",
            tiny_model,
            "--threads",
            "1",
            "--label-map",
            str(label_map),
            "--no-cache",
        ]
    )
    assert code == 0, err
    code, _, err = _run(
        [
            "eval",
            str(held),
            "--pack",
            str(tmp_path / "p.json"),
            "-m",
            tiny_model,
            "--threads",
            "1",
            "-o",
            str(tmp_path / "r"),
            "--no-plots",
        ]
    )  # no label map: class a, class b, noise
    assert code == 1
    assert "pack p scores class A, class B, noise; the data's labels are class a, class b, noise" in err
    assert not (tmp_path / "r").exists()
