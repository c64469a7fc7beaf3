"""`earmark duplicates` on a real generated library: 30 recordings in 2-4 versions (wav 48 kHz, mp3 128k,
ogg 22 kHz mono, a copy trimmed by 0.5 s) plus unrelated files of the same kinds, tagged with the tiny
model (Chromaprint fingerprints from fpcalc, stored during tag)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dups_data import VERSIONS, make_duplicates_library, texture, write_versions
from earmark.cli import cli
from earmark.library import fingerprints
from earmark.library.print_index import candidate_pairs
from helpers import TINY_MODEL
from library_data import tree_hashes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not fingerprints.available(), reason="needs fpcalc (Debian libchromaprint-tools)"),
]

LABELS = "noise, chirp, clicks"


def run(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def tag(db: Path, *targets: Path | str, extra: tuple[str, ...] = ()) -> object:
    return run("tag", *map(str, targets), "-l", LABELS, "--db", str(db), "-m", str(TINY_MODEL), *extra)


def copy_db(src: Path, dst: Path) -> Path:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


@pytest.fixture(scope="module")
def dup_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]], Path]:
    base = tmp_path_factory.mktemp("dups")
    root = base / "library"
    manifest = make_duplicates_library(root)
    db = base / "lib.db"
    tag(db, root)
    return root, manifest, db


def groups_of(db: Path, root: Path, *extra: str) -> list[list[str]]:
    out = json.loads(run("duplicates", "--db", str(db), "--json", *extra).stdout)
    return [[str(Path(f["path"]).relative_to(root)) for f in g["files"]] for g in out["groups"]]


def test_finds_exactly_the_recordings_and_keeps_the_wav_master(dup_library) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = dup_library
    groups = groups_of(db, root)
    expected = {name: sorted(paths) for name, paths in manifest.items() if name != "unrelated"}
    assert sorted(map(sorted, groups)) == sorted(expected.values()), (
        "the user sees groups that are not exactly the 30 recordings' versions"
    )
    grouped = {p for g in groups for p in g}
    assert not grouped & set(manifest["unrelated"]), "an unrelated file is listed as someone's duplicate"
    for g in groups:
        assert g[0].endswith(".wav") and " trimmed" not in g[0], (
            f"the suggested keeper of {g} is not the full-length 48 kHz wav master"
        )


def test_json_has_evidence_and_csv_one_row_per_file(dup_library) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = dup_library
    out = json.loads(run("duplicates", "--db", str(db), "--json").stdout)
    assert out["fingerprinted"] == out["files"] == sum(len(v) for v in manifest.values())
    assert out["candidates"] < out["files"] * (out["files"] - 1) // 4, "the index proposed most of all pairs"
    for g in out["groups"]:
        assert [f["keeper"] for f in g["files"]] == [True] + [False] * (len(g["files"]) - 1)
        for e in g["evidence"]:
            assert e["kind"] == "fingerprint" and e["similarity"] >= 0.7, e
            assert e["embedding_cosine"] is not None, "a fingerprint match lacks its embedding confirmation"
        trims = [e["offset_s"] for e in g["evidence"]]
        assert all(abs(t) < 1.0 for t in trims), f"a 0.5 s trim shows as an offset of {trims} s"
    rows = list(csv.DictReader(io.StringIO(run("duplicates", "--db", str(db), "--csv").stdout)))
    assert len(rows) == sum(len(g["files"]) for g in out["groups"])
    assert sum(int(r["keeper"]) for r in rows) == len(out["groups"]) == 30
    text = run("duplicates", "--db", str(db)).output
    assert "30 groups" in text and "keep" in text


def test_a_stricter_threshold_never_merges_more(dup_library) -> None:  # type: ignore[no-untyped-def]
    root, _, db = dup_library
    strict = groups_of(db, root, "--min-similarity", "0.99")
    assert sum(len(g) for g in strict) <= sum(len(g) for g in groups_of(db, root))


def test_a_new_transcode_joins_its_group_after_tag(dup_library, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = dup_library
    db2 = copy_db(db, tmp_path / "lib.db")
    new = tmp_path / "new" / "chirp 01 preview.mp3"  # recording 1 is a chirp train
    write_versions(
        [(texture("chirp", 6.0, seed=1), [(new, ["-ar", "32000", "-c:a", "libmp3lame", "-b:a", "64k"])])]
    )
    tag(db2, new)
    out = json.loads(run("duplicates", "--db", str(db2), "--json").stdout)
    mine = [g for g in out["groups"] if any(f["path"] == str(new) for f in g["files"])]
    assert len(mine) == 1, "the new transcode is in no group (or in several)"
    paths = sorted(str(Path(f["path"]).relative_to(root)) for f in mine[0]["files"] if f["path"] != str(new))
    assert paths == sorted(manifest["chirp 01"]), "the new transcode joined another recording's group"
    assert len(out["groups"]) == 30


def test_skip_duplicates_files_one_copy_and_undo_restores_the_tree(dup_library, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = dup_library
    lib = tmp_path / "library"
    shutil.copytree(root, lib)
    db2 = copy_db(db, tmp_path / "lib.db")
    before = tree_hashes(lib)
    out = tmp_path / "out"
    dry = tag(db2, lib, extra=("--sort-into", str(out), "--move", "--skip-duplicates", "--dry-run"))
    copies = sum(len(v) - 1 for k, v in manifest.items() if k != "unrelated")
    skip_lines = [line for line in dry.output.splitlines() if line.startswith("skip ")]  # type: ignore[attr-defined]
    assert len(skip_lines) == copies and all("same recording as" in line for line in skip_lines), (
        "the dry run does not list each copy it would leave out"
    )
    assert tree_hashes(lib) == before and not out.exists(), "the dry run touched files"
    assert sqlite3.connect(db2).execute("SELECT count(*) FROM lib_skipped").fetchone()[0] == 0
    result = tag(db2, lib, extra=("--sort-into", str(out), "--move", "--skip-duplicates"))
    filed = tree_hashes(out)
    recordings = len(manifest) - 1
    assert len(filed) == recordings + len(manifest["unrelated"]), "not one filed file per recording"
    names = {Path(p).name for p in filed}
    for name, versions in manifest.items():
        if name != "unrelated":
            assert names & {Path(v).name for v in versions} == {Path(versions[0]).name}, (
                f"{name}: the filed copy is not its wav master"
            )
    skipped = sqlite3.connect(db2).execute("SELECT count(*) FROM lib_skipped").fetchone()[0]
    assert skipped == copies
    assert f"{skipped} duplicates not filed" in result.stderr  # type: ignore[attr-defined]
    run_id = sqlite3.connect(db2).execute("SELECT max(id) FROM lib_runs WHERE kind='tag'").fetchone()[0]
    run("undo", str(run_id), "--db", str(db2))
    assert tree_hashes(lib) == before, "undo did not put the library back byte for byte"
    assert not tree_hashes(out), "undo left files in the output folder"


def test_files_tagged_before_fingerprints_get_them_on_the_next_tag_without_the_model(
    dup_library, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    root, _, db = dup_library
    db2 = copy_db(db, tmp_path / "lib.db")
    with sqlite3.connect(db2) as c:  # a library tagged before migration library-dups-001 had none
        c.execute("DELETE FROM lib_fingerprints")
        embeddings = c.execute("SELECT count(*), max(id) FROM lib_embeddings").fetchone()
    result = run("duplicates", "--db", str(db2), "--json")
    out = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert out["groups"] == [] and out["without_fingerprint"] == out["files"], (
        "files without a fingerprint were grouped by embeddings alone"
    )
    assert "re-run `earmark tag`" in result.stderr  # type: ignore[attr-defined]
    tag(db2, root)
    with sqlite3.connect(db2) as c:
        assert c.execute("SELECT count(*), max(id) FROM lib_embeddings").fetchone() == embeddings, (
            "re-running tag embedded the files with the model again"
        )
    assert len(groups_of(db2, root)) == 30, "re-running tag did not add the missing fingerprints"


def test_files_too_short_to_fingerprint_match_by_embedding(dup_library, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, _, db = dup_library
    db2 = copy_db(db, tmp_path / "lib.db")
    short = tmp_path / "short"
    wave = texture("clicks", 1.5, seed=77)
    write_versions([(wave, [(short / "blip.wav", VERSIONS[".wav"]), (short / "blip.mp3", VERSIONS[".mp3"])])])
    tag(db2, short)
    out = json.loads(run("duplicates", "--db", str(db2), "--json").stdout)
    mine = [g for g in out["groups"] if any(f["path"].startswith(str(short)) for f in g["files"])]
    assert len(mine) == 1 and len(mine[0]["files"]) == 2, "a 1.5 s sound and its mp3 were not grouped"
    assert [e["kind"] for e in mine[0]["evidence"]] == ["embedding"]
    assert out["without_fingerprint"] == 2


def test_index_finds_transcodes_among_unrelated_fingerprints_without_all_pairs() -> None:
    rng = np.random.default_rng(3)
    base = [rng.integers(0, 2**32, 200, dtype=np.uint32) for _ in range(300)]
    prints = list(base)
    for k in range(0, 300, 3):  # every third one has a copy: one bit flipped in a third of its items
        flips = rng.integers(0, 32, (200, 2))
        noisy = base[k] ^ ((np.uint32(1) << flips[:, 0].astype(np.uint32)) * (rng.random(200) < 0.33))
        prints.append(noisy[3:].astype(np.uint32))  # and trimmed by 3 items
    pairs = candidate_pairs(prints)
    shares, _ = fingerprints.similarities(prints, pairs)
    found = {tuple(p) for p, s in zip(pairs.tolist(), shares, strict=True) if s >= 0.7}
    assert found == {(k, 300 + k // 3) for k in range(0, 300, 3)}
    assert len(pairs) < 300 * 12, "the index compared more than a bounded number of pairs per file"


def test_fpcalc_runs_on_a_real_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.wav"
    write_versions([(texture("noise", 4.0, seed=5), [(path, VERSIONS[".wav"])])])
    fp = fingerprints.compute(str(path))
    assert fp is not None and fp.usable and fp.duration_s == pytest.approx(4.0, abs=0.1)
    assert subprocess.run(["fpcalc", "-version"], capture_output=True).returncode == 0


def test_rest_endpoint_and_library_tab_rows(dup_library) -> None:  # type: ignore[no-untyped-def]
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from earmark.server.library_dups_routes import SAMPLE, DuplicatesResponse, router
    from earmark.server.library_dups_tab import duplicate_rows
    from earmark.store import Database

    root, manifest, db = dup_library
    app = FastAPI()
    app.include_router(router)
    app.state.db = Database(db)
    with TestClient(app) as client:
        r = client.get("/api/v1/library/duplicates")
        assert r.status_code == 200, r.text
        body = DuplicatesResponse.model_validate(r.json())
        assert len(body.groups) == 30 and all(g.files[0].keeper for g in body.groups)
        assert client.get("/api/v1/library/duplicates", params={"min_similarity": 2}).status_code == 422
    DuplicatesResponse.model_validate(SAMPLE)
    rows, status = duplicate_rows(Database(db), 0.7)
    assert status.startswith("30 groups") and len(rows) == sum(
        len(v) for k, v in manifest.items() if k != "unrelated"
    )
    assert [r[1] for r in rows].count("keep") == 30, "the Library tab does not mark one keeper per group"


def test_server_reuses_the_report_but_shows_moves_and_removals(dup_library, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from earmark.library.duplicates import cached_duplicates
    from earmark.store import Database

    _, _, db = dup_library
    db2 = Database(copy_db(db, tmp_path / "lib.db"))
    first = cached_duplicates(db2)
    assert cached_duplicates(db2) == first, "asking twice gave another answer"
    keeper = first.groups[0].keeper
    moved = str(tmp_path / "filed" / "moved.wav")
    with db2.transaction() as c:  # what filing with --move does to a file's row
        c.execute("UPDATE lib_files SET path=? WHERE id=?", (moved, keeper.file_id))
    again = cached_duplicates(db2)
    paths = {f.file_id: f.path for g in again.groups for f in g.files}
    assert paths[keeper.file_id] == moved, "the page shows a moved file at its old path"
    gone = first.groups[-1].files[-1].file_id
    with db2.transaction() as c:
        c.execute("DELETE FROM lib_files WHERE id=?", (gone,))
    after = cached_duplicates(db2)
    assert gone not in {f.file_id for g in after.groups for f in g.files}, "a removed file is still listed"


def test_search_index_gives_the_same_files_with_and_without_faiss(dup_library, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from earmark.backends.identity import model_fingerprint
    from earmark.library.records import model_key
    from earmark.library.search import WindowIndex
    from earmark.store import Database

    _, _, db = dup_library
    key = model_key(str(TINY_MODEL), model_fingerprint(TINY_MODEL))  # the key tag stored the windows under
    with_faiss = WindowIndex.load(Database(db), key)
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)  # as if faiss were not installed
    without = WindowIndex.load(Database(db), key)
    assert without.faiss_index is None and len(with_faiss) == len(without) > 0
    rng = np.random.default_rng(0)
    for q in rng.standard_normal((5, with_faiss.matrix.shape[1])).astype(np.float32):
        q /= np.linalg.norm(q)
        a, b = with_faiss.query(q, 7), without.query(q, 7)
        assert [x[0] for x in a] == [x[0] for x in b], "search lists other files without faiss"
        assert np.allclose([x[1] for x in a], [x[1] for x in b], atol=1e-5)
