"""Labelled-data loaders: class folders, manifests, label maps and a small fake ESC-50 tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from earmark.errors import ConfigError
from earmark.evaluate import datasets

ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")  # the loaders only check files exist; decoding is tested elsewhere
    return path


def fake_esc50(root: Path) -> Path:
    """Same layout as ESC-50: meta/esc50.csv + audio/, three categories over two folds."""
    rows = [
        ("1-100-A-0.wav", 1, 0, "dog", "True"),
        ("1-101-A-11.wav", 1, 11, "sea_waves", "False"),
        ("1-102-A-30.wav", 1, 30, "door_wood_knock", "False"),
        ("2-200-A-0.wav", 2, 0, "dog", "True"),
        ("2-201-A-11.wav", 2, 11, "sea_waves", "False"),
        ("2-202-B-30.wav", 2, 30, "door_wood_knock", "False"),
    ]
    (root / "meta").mkdir(parents=True)
    lines = [f"{f},{fold},{t},{c},{e},src,A\n" for f, fold, t, c, e in rows]
    (root / "meta" / "esc50.csv").write_text(ESC50_HEADER + "".join(lines))
    for f, *_ in rows:
        _touch(root / "audio" / f)
    return root


def test_esc50_loader_phrases_classes_like_laion_and_selects_folds(tmp_path: Path) -> None:
    ds = datasets.load(fake_esc50(tmp_path / "ESC-50-master"))
    # target order, underscores as spaces: LAION's ESC50_class_labels_indices_space.json
    assert ds.labels == ("dog", "sea waves", "door wood knock")
    assert ds.template == "This is a sound of {label}"
    assert len(ds.items) == 6 and {i.fold for i in ds.items} == {"1", "2"}
    fold1 = datasets.load(tmp_path / "ESC-50-master", folds=["1"])
    assert [Path(i.path).name for i in fold1.items] == ["1-100-A-0.wav", "1-101-A-11.wav", "1-102-A-30.wav"]
    assert fold1.targets() == [0, 1, 2]
    assert fold1.labels == ds.labels
    esc10 = datasets.esc50(tmp_path / "ESC-50-master", esc10=True)
    assert esc10.labels == ("dog",) and len(esc10.items) == 2
    with pytest.raises(ConfigError, match="no fold 7; folds are: 1, 2"):
        datasets.load(tmp_path / "ESC-50-master", folds=[7])


def test_esc50_missing_audio_or_columns_is_a_clear_error(tmp_path: Path) -> None:
    root = fake_esc50(tmp_path / "esc")
    (root / "audio" / "2-201-A-11.wav").unlink()
    with pytest.raises(ConfigError, match=r"1 listed file\(s\) do not exist: .*2-201-A-11.wav"):
        datasets.load(root)
    (root / "meta" / "esc50.csv").write_text("filename,fold\n1-100-A-0.wav,1\n")
    with pytest.raises(ConfigError, match="needs the columns category, filename, fold, target"):
        datasets.load(root)


def test_class_folders_with_label_map(tmp_path: Path) -> None:
    for name in ("glass_breaking", "bearing_dry", "zz_other"):
        _touch(tmp_path / "data" / name / "a.wav")
        _touch(tmp_path / "data" / name / "sub" / "b.flac")
        (tmp_path / "data" / name / "notes.txt").write_text("not audio")
    (tmp_path / "map.json").write_text(json.dumps({"bearing_dry": "a dry squealing bearing", "nope": "x"}))
    ds = datasets.load(tmp_path / "data", label_map=tmp_path / "map.json")
    assert ds.labels == ("a dry squealing bearing", "glass breaking", "zz other")
    assert len(ds.items) == 6 and all(i.path.endswith((".wav", ".flac")) for i in ds.items)
    assert ds.counts() == {"a dry squealing bearing": 2, "glass breaking": 2, "zz other": 2}
    with pytest.raises(ConfigError, match="has no folds"):
        ds.select_folds(["1"])


def test_label_map_csv_and_clashes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _touch(tmp_path / "d" / name / "x.wav")
    (tmp_path / "m.csv").write_text("name,label\n# comment\na,same text\nb,Same  text\n")
    assert datasets.load_label_map(tmp_path / "m.csv") == {"a": "same text", "b": "Same  text"}
    with pytest.raises(ConfigError, match="both read as label 'Same text'"):
        datasets.load(tmp_path / "d", label_map=tmp_path / "m.csv")
    (tmp_path / "bad.csv").write_text("a,b,c\n")
    with pytest.raises(ConfigError, match="line 1: expected 2 columns"):
        datasets.load_label_map(tmp_path / "bad.csv")
    (tmp_path / "comma.json").write_text(json.dumps({"a": "dog, barking"}))
    with pytest.raises(ConfigError, match="contain no comma"):
        datasets.load(tmp_path / "d", label_map=tmp_path / "comma.json")


def test_manifests_csv_and_jsonl(tmp_path: Path) -> None:
    _touch(tmp_path / "clips" / "1.wav")
    _touch(tmp_path / "clips" / "2.wav")
    _touch(tmp_path / "clips" / "3.wav")
    (tmp_path / "m.csv").write_text(
        "path,label,fold\nclips/1.wav,siren,1\nclips/2.wav,dog,2\nclips/3.wav,dog,1\n"
    )
    ds = datasets.load(tmp_path / "m.csv", folds=["1"])
    assert ds.labels == ("dog", "siren")
    assert [(Path(i.path).name, i.label) for i in ds.items] == [("1.wav", "siren"), ("3.wav", "dog")]
    lines = [{"path": str(tmp_path / "clips" / "1.wav"), "label": "a"}, {"path": "clips/2.wav", "label": "b"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ds = datasets.load(tmp_path / "m.jsonl")
    assert ds.labels == ("a", "b") and all(Path(i.path).is_file() for i in ds.items)


def test_bad_manifests_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "missing.csv").write_text("path,label\nnope.wav,a\nnope2.wav,b\n")
    with pytest.raises(ConfigError, match="2 listed file"):
        datasets.load(tmp_path / "missing.csv")
    (tmp_path / "nolabel.csv").write_text("path,label\nx.wav,\n")
    with pytest.raises(ConfigError, match="entry 1: needs non-empty 'path' and 'label'"):
        datasets.load(tmp_path / "nolabel.csv")
    (tmp_path / "bad.jsonl").write_text('{"path": "a", "label": "b"}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2 is not JSON"):
        datasets.load(tmp_path / "bad.jsonl")
    _touch(tmp_path / "only" / "a" / "x.wav")
    with pytest.raises(ConfigError, match="at least 2"):
        datasets.load(tmp_path / "only")
    with pytest.raises(ConfigError, match="does not exist"):
        datasets.load(tmp_path / "nothing-here")
