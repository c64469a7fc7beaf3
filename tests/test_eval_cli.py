"""earmark eval with the tiny model on generated labelled folders: report numbers, cache, errors, ESC-50.

The tiny model knows six synthetic sounds; its scores here check the machinery,
not the accuracy of CLAP.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from earmark import Classifier, synth
from earmark.cli import cli
from earmark.evaluate.cache import EmbeddingCache, embed_files
from earmark.evaluate.datasets import load
from earmark.store import Database
from earmark.types import ClassifyOptions
from helpers import encode, labelled_folder

ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 3 files, plus one beep filed under hum (a known mistake of the labels, not the model)."""
    root = tmp_path_factory.mktemp("small")
    labelled_folder(
        root, {k: [synth.make(k, 1.0, seed=s) for s in range(3)] for k in ("beep", "hum", "noise")}
    )
    encode(synth.make("beep", 1.0, seed=9), root / "hum" / "zz-actually-a-beep.wav")
    return root


def _eval(args: list[str], tiny_model: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["eval", *args, "-m", tiny_model, "--threads", "1"], catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def test_report_numbers_match_a_hand_count(small_set: Path, tiny_model: str, tmp_path: Path) -> None:
    code, out, err = _eval([str(small_set), "-o", str(tmp_path / "r"), "--no-baseline"], tiny_model)
    assert code == 0, err
    assert "report:" in out and "10 files" in err
    for name in ("report.md", "report.json", "predictions.csv", "coverage.png", "confusion-1.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    assert (tmp_path / "r" / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    (v,) = doc["variants"]
    m = v["metrics"]
    # hand count: 9 right; the beep under hum/ is answered "beep"
    assert m["n"] == 10 and m["accuracy"] == pytest.approx(0.9)
    assert m["confusion"]["labels"] == ["beep", "hum", "noise"]
    assert m["confusion"]["rows_true_columns_answer"] == [[3, 0, 0], [1, 3, 0], [0, 0, 3]]
    per = {c["label"]: c for c in m["per_class"]}
    assert per["beep"]["precision"] == pytest.approx(0.75) and per["beep"]["recall"] == 1.0
    assert per["hum"]["precision"] == 1.0 and per["hum"]["recall"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((6 / 7 + 6 / 7 + 1) / 3)
    assert m["confused_pairs"] == [{"true": "hum", "answer": "beep", "count": 1}]
    cov = [pt["coverage"] for pt in m["coverage"]]
    assert all(a >= b for a, b in itertools.pairwise(cov)) and cov[0] == 1.0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "hum → beep (1)" in md and "| beep | 75.0 % | 100.0 % |" in md and "90.0 %" in md
    with open(tmp_path / "r" / "predictions.csv", newline="") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert rows["zz-actually-a-beep.wav"]["label"] == "hum"
    assert rows["zz-actually-a-beep.wav"]["v1 answer"] == "beep"
    assert sum(r["label"] == r["v1 answer"] for r in rows.values()) == 9


def test_second_run_with_other_labels_and_templates_embeds_nothing(
    small_set: Path, tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import earmark.evaluate.cache as eval_cache

    calls: list[str] = []
    real_embed_many = eval_cache.embed_many

    def counting_embed_many(classifier: Classifier, sources: list[object], **kw: object):  # type: ignore[no-untyped-def]
        for source, result in real_embed_many(classifier, sources, **kw):  # type: ignore[arg-type]
            calls.append(str(source))  # every file that was decoded and embedded
            yield source, result

    monkeypatch.setattr(eval_cache, "embed_many", counting_embed_many)
    code, _, err = _eval([str(small_set), "-o", str(tmp_path / "a"), "--no-plots"], tiny_model)
    assert code == 0, err
    assert len(calls) == 10
    (tmp_path / "map.json").write_text(json.dumps({"beep": "beeping", "hum": "mains hum", "noise": "hiss"}))
    code, _, err = _eval(
        [
            str(small_set),
            "--label-map",
            str(tmp_path / "map.json"),
            "--template",
            "{label}",
            "--template",
            "the sound of {label}",
            "--average-templates",
            "-o",
            str(tmp_path / "b"),
            "--no-plots",
        ],
        tiny_model,
    )
    assert code == 0, err
    assert len(calls) == 10  # nothing decoded or embedded again
    doc = json.loads((tmp_path / "b" / "report.json").read_text())
    assert next(iter(doc["embedding"].values())) == {"files": 10, "embedded": 0, "cached": 10, "seconds": 0.0}
    names = [v["name"] for v in doc["variants"]]
    assert names == [
        "zero-shot · '{label}'",
        "zero-shot · 'the sound of {label}'",
        "zero-shot · '{label}' + 'the sound of {label}'",
        "linear probe (4-fold cv)",
    ]
    assert doc["dataset"]["labels"] == ["beeping", "mains hum", "hiss"]
    assert doc["variants"][0]["metrics"]["accuracy"] == pytest.approx(0.9)


def test_cache_misses_on_changed_file_or_window(classifier: Classifier, tmp_path: Path) -> None:
    a = encode(synth.make("hum", 1.0, seed=1), tmp_path / "a.wav")
    cache = EmbeddingCache(Database(tmp_path / "cache.db"))
    opts = ClassifyOptions(window_s=10.0, hop_s=5.0)
    first = list(embed_files(classifier, [str(a)], options=opts, cache=cache))
    again = list(embed_files(classifier, [str(a)], options=opts, cache=cache))
    assert (first[0].cached, again[0].cached) == (False, True)
    # the one store keeps float16 (as tag does): within rounding of the fresh vectors
    assert abs(again[0].result.vectors - first[0].result.vectors).max() < 2e-3  # type: ignore[union-attr]
    other_window = list(
        embed_files(classifier, [str(a)], options=ClassifyOptions(window_s=0.5, hop_s=0.5), cache=cache)
    )
    assert not other_window[0].cached and len(other_window[0].result.spans_s) == 2  # type: ignore[union-attr]
    encode(synth.make("beep", 1.0, seed=1), a)
    changed = list(embed_files(classifier, [str(a)], options=opts, cache=cache))
    assert not changed[0].cached


def test_unreadable_files_are_left_out_and_listed(small_set: Path, tiny_model: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    labelled_folder(
        data, {"beep": [synth.make("beep", 1.0, seed=1)], "hum": [synth.make("hum", 1.0, seed=1)]}
    )
    (data / "hum" / "broken.wav").write_bytes(b"RIFF\x00\x00not really audio")
    code, _, err = _eval([str(data), "-o", str(tmp_path / "r"), "--no-plots", "--no-baseline"], tiny_model)
    assert code == 0
    assert "broken.wav" in err and "1 of 3 file(s) could not be read" in err
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [Path(e["path"]).name for e in doc["errors"]] == ["broken.wav"]
    assert doc["variants"][0]["metrics"]["n"] == 2
    assert "## Unreadable files (left out)" in (tmp_path / "r" / "report.md").read_text()


def test_esc50_layout_end_to_end(tiny_model: str, tmp_path: Path) -> None:
    """A fake ESC-50 whose categories the tiny model knows: LAION phrasing turns mains_hum into 'mains hum'."""
    root = tmp_path / "ESC-50-master"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = []
    for fold in (1, 2):
        for target, (kind, category) in enumerate(
            [("beep", "beep"), ("hum", "mains_hum"), ("noise", "white_noise")]
        ):
            name = f"{fold}-{target}0-A-{target}.wav"
            encode(synth.make(kind, 1.0, seed=fold), root / "audio" / name)
            rows.append(f"{name},{fold},{target},{category},False,x,A\n")
    (root / "meta" / "esc50.csv").write_text(ESC50_HEADER + "".join(rows))
    assert load(root).labels == ("beep", "mains hum", "white noise")
    # the same model under a second name stands in for a second model: one run compares both
    other_name = os.path.relpath(tiny_model)
    code, out, err = _eval(
        [
            str(root),
            "--fold",
            "1",
            "-o",
            str(tmp_path / "r"),
            "--no-plots",
            "--no-baseline",
            "-m",
            other_name,
        ],
        tiny_model,
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["dataset"]["folds"] == ["1"] and doc["dataset"]["scored"] == 3
    assert [v["model"] for v in doc["variants"]] == [other_name, tiny_model]
    for v in doc["variants"]:
        assert v["templates"] == ["This is a sound of {label}"]
        assert v["metrics"]["accuracy"] == 1.0
    assert "report:" in out


def test_bad_input_is_one_clear_line(tmp_path: Path, tiny_model: str) -> None:
    (tmp_path / "one" / "a").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "one"), "-m", tiny_model])
    assert result.exit_code == 1
    assert "needs one sub-folder per class (at least 2)" in result.stderr
    assert "Traceback" not in result.output
