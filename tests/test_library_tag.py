"""earmark tag on a generated library of real encoded files, with the tiny model."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import earmark.audio
from earmark import synth
from earmark.cli import cli
from earmark.errors import LabelError
from earmark.library import FileTagged, ModelRef, TagOptions, tag_paths
from earmark.library.scan import content_hash
from earmark.store import Database
from helpers import LABELS, TINY_MODEL, encode


def _no_model() -> ModelRef:
    def refuse():  # type: ignore[no-untyped-def]
        raise AssertionError("the model was loaded, but nothing needed it")

    return ModelRef(str(TINY_MODEL), refuse)


def _tagged(events: list[object]) -> dict[str, FileTagged]:
    return {e.path: e for e in events if isinstance(e, FileTagged)}


def test_statuses_on_the_generated_library(tagged_library) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path, events = tagged_library
    assert len(manifest) >= 200
    found = _tagged(events)
    assert set(found) == {str(root / rel) for rel in manifest}  # the .dat wav found, txt/jpg ignored
    errors = {p for p, e in found.items() if e.status == "error"}
    assert errors == {str(root / rel) for rel, kind in manifest.items() if kind == "error"}
    assert all(found[p].error for p in errors)
    right = wrong = 0
    for rel, kind in manifest.items():
        e = found[str(root / rel)]
        if kind == "error":
            continue
        assert e.status == ("auto" if e.top_score >= 0.8 else "review")
        if e.status == "auto":
            right, wrong = right + (e.top_label == kind), wrong + (e.top_label != kind)
    assert right >= 0.95 * (right + wrong) and right > 150


def test_stored_facts_per_file(tagged_library) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path, _ = tagged_library
    db = Database(db_path)
    rows = {
        r["path"]: r
        for r in db.conn.execute(
            "SELECT f.*, e.n_windows, e.dim, length(e.vectors) AS nbytes"
            " FROM lib_files f JOIN lib_embeddings e ON e.id=f.embedding_id"
        )
    }
    long_clip = next(rel for rel in manifest if rel.startswith("field recordings/2019/beep_"))  # noqa: F841
    for rel, kind in list(manifest.items())[:40]:
        r = rows[str(root / rel)]
        path = root / rel
        assert r["size"] == path.stat().st_size and r["mtime_ns"] == path.stat().st_mtime_ns
        assert r["content_hash"] == content_hash(path)
        if kind == "error":
            continue
        assert r["sample_rate"] == 48000 and r["channels"] == 1 and r["preprocess"] == "none"
        assert r["nbytes"] == r["n_windows"] * r["dim"] * 2  # float16
        assert r["n_windows"] == (2 if r["duration_s"] > 10 else 1)
        scores = json.loads(
            db.conn.execute(
                "SELECT scores FROM lib_predictions WHERE id=?", (r["prediction_id"],)
            ).fetchone()[0]
        )
        assert [s[0] for s in scores][0] == r["top_label"] and len(scores) == len(LABELS)
    assert any(r["n_windows"] == 2 for r in rows.values())


def test_rerun_skips_everything_without_loading_the_model(library_copy) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path = library_copy
    db = Database(db_path)
    events = list(tag_paths(db, [root], TagOptions(labels=tuple(LABELS)), _no_model()))
    found = _tagged(events)
    assert len(found) == len(manifest)
    assert Counter(e.how for e in found.values()) == {"skipped": len(manifest)}


@pytest.mark.slow
def test_changed_labels_reuse_embeddings_without_decoding(
    tagged_library, classifier, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path, _ = tagged_library
    shutil.copy(db_path, tmp_path / "db")
    decodes = []
    real_stream = earmark.audio.stream
    monkeypatch.setattr(earmark.audio, "stream", lambda *a, **k: decodes.append(a) or real_stream(*a, **k))
    new_labels = ("tone", "mains hum", "hiss", "ticking", "sweep", "quiet")
    events = list(tag_paths(Database(tmp_path / "db"), [root], TagOptions(labels=new_labels), classifier))
    found = _tagged(events)
    assert decodes == []
    distinct = {
        content_hash(root / rel) for rel, k in manifest.items() if k != "error"
    }  # some files are copies
    assert Counter(e.how for e in found.values()) == {
        "rescored": len(distinct),
        "skipped": len(manifest) - len(distinct),
    }
    beeps = [e for rel, k in manifest.items() if k == "beep" for e in [found[str(root / rel)]]]
    assert sum(e.top_label == "tone" for e in beeps) >= 0.9 * len(beeps)
    # the same as tagging those files from scratch with the new labels, to the float16 rounding of
    # the stored vectors (fresh scores come from full precision; docs/library.md says how far they may differ)
    fresh_db = Database(tmp_path / "fresh.db")
    some = [str(root / rel) for rel, k in manifest.items() if k != "error"][:12]
    monkeypatch.setattr(earmark.audio, "stream", real_stream)
    fresh = _tagged(list(tag_paths(fresh_db, some, TagOptions(labels=new_labels), classifier)))
    for path in some:
        assert fresh[path].how == "embedded"
        assert fresh[path].top_label == found[path].top_label
        assert fresh[path].top_score == pytest.approx(found[path].top_score, abs=5e-3)


def test_changed_file_is_tagged_again(library_copy, classifier) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path = library_copy
    rel = next(rel for rel, k in manifest.items() if k == "beep" and rel.endswith(".wav"))
    encode(synth.make("hum", 2.0, seed=99), root / rel)
    found = _tagged(list(tag_paths(Database(db_path), [root], TagOptions(labels=tuple(LABELS)), classifier)))
    assert found[str(root / rel)].how == "embedded" and found[str(root / rel)].top_label == "hum"
    assert Counter(e.how for e in found.values())["embedded"] == 1


@pytest.mark.slow
def test_noise_reduction_is_optional_and_recorded(sound_library, classifier, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest = sound_library
    files = [str(root / rel) for rel, k in manifest.items() if k in ("beep", "hum")][:4]
    db = Database(tmp_path / "db")
    plain = _tagged(list(tag_paths(db, files, TagOptions(labels=tuple(LABELS)), classifier)))
    clean = _tagged(list(tag_paths(db, files, TagOptions(labels=tuple(LABELS), denoise=True), classifier)))
    assert all(e.how == "embedded" for e in clean.values())  # a different embedding, not the plain one
    rows = db.conn.execute(
        "SELECT f.preprocess, e.preprocess FROM lib_files f JOIN lib_embeddings e ON e.id=f.embedding_id"
    ).fetchall()
    assert {tuple(r) for r in rows} == {("noisereduce", "noisereduce")}
    assert db.conn.execute("SELECT count(DISTINCT preprocess) FROM lib_embeddings").fetchone()[0] == 2
    vectors = db.conn.execute(
        "SELECT vectors FROM lib_embeddings ORDER BY preprocess, content_hash"
    ).fetchall()
    assert vectors[: len(files)] != vectors[len(files) :]
    assert set(plain) == set(clean)
    # and it does reduce noise: white noise loses most of its energy
    from earmark.library.denoise import denoise

    noise = synth.make("noise", 2.0, seed=3)
    assert np.sqrt(np.mean(denoise(noise, 48000) ** 2)) < 0.5 * np.sqrt(np.mean(noise**2))


def test_bad_labels_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(LabelError):
        list(tag_paths(Database(tmp_path / "db"), [tmp_path], TagOptions(labels=("only one",)), _no_model()))
    assert not (tmp_path / "db").exists() or Database(tmp_path / "db").conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name='lib_runs'"
    ).fetchone()[0] in (0, 1)


def _cli(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_cli_rerun_is_instant_and_summarises(library_copy, tagged_library) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path = library_copy
    counts = Counter(e.status for e in _tagged(tagged_library[3]).values())
    result = _cli("tag", str(root), "-l", ",".join(LABELS), "--db", str(db_path), "-m", str(TINY_MODEL))
    assert result.exit_code == 0, result.output
    assert f"{counts['auto']} confident, {counts['review']} to review, 4 errors" in result.stderr
    assert f"({len(manifest)} skipped)" in result.stderr


def test_vectors_round_trip_float16(tagged_library, classifier) -> None:  # type: ignore[no-untyped-def]
    from earmark.library.records import embedding_from_row

    root, manifest, db_path, _ = tagged_library
    db = Database(db_path)
    rel = next(rel for rel, k in manifest.items() if k == "chirp")
    row = db.conn.execute(
        "SELECT e.* FROM lib_files f JOIN lib_embeddings e ON e.id=f.embedding_id WHERE f.path=?",
        (str(root / rel),),
    ).fetchone()
    stored = embedding_from_row(row, rel)
    fresh = classifier.embed(root / rel)
    assert np.abs(stored.vectors - fresh.vectors).max() < 2e-3
    assert (
        abs(
            classifier.score(stored, LABELS).top.probability - classifier.score(fresh, LABELS).top.probability
        )
        < 5e-3
    )
    assert os.path.basename(rel).startswith("chirp")
