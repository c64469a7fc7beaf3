"""Library building blocks without the model: sniffing, names, file primitives, journal recovery, index."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from earmark.audio.sniff import sniff
from earmark.errors import FilingError, StoreError
from earmark.library import folder_name
from earmark.library.fileops import NameTaken, copy_verified, partial_path, place
from earmark.library.filing import unique_name
from earmark.library.journal import complete_op, plan_op, recover, start_run, writer
from earmark.library.scan import content_hash, walk_audio
from earmark.library.schema import migrate
from earmark.library.search import WindowIndex
from earmark.store import Database


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"FORM\x00\x00\x00\x00AIFFCOMM", "aiff"),
        (b"ID3\x04\x00", "mp3"),
        (b"\xff\xfb\x90\x64", "mpeg"),  # MPEG-1 layer III frame
        (b"\xff\xf1\x50\x80", "mpeg"),  # ADTS AAC
        (b"OggS\x00\x02", "ogg"),
        (b"fLaC\x00\x00", "flac"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "mp4"),
        (b"\x1a\x45\xdf\xa3\x01", "matroska"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", None),  # jpeg: starts with 0xFF but is no audio frame
        (b"%PDF-1.7", None),
        (b"", None),
    ],
)
def test_sniff_recognises_containers_by_content(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


def test_walk_finds_audio_by_content_skips_symlinks_and_partials(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "real.bin").write_bytes(b"OggS" + b"\x00" * 60)  # audio by content
    (tmp_path / "a" / "named.mp3").write_bytes(b"junk")  # audio by name: tagged (and will error)
    (tmp_path / "a" / "notes.txt").write_bytes(b"hello")
    (tmp_path / "a" / ".x.wav.3.earmark-partial").write_bytes(b"RIFF")
    os.symlink(tmp_path / "a" / "real.bin", tmp_path / "a" / "link.ogg")
    os.symlink(tmp_path / "a", tmp_path / "looped")
    out = tmp_path / "a" / "out"
    out.mkdir()
    (out / "filed.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    found = list(walk_audio([tmp_path], exclude=[out]))
    assert found == [str(tmp_path / "a" / "named.mp3"), str(tmp_path / "a" / "real.bin")]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("dog", "dog"),
        ("../../etc", "_.._etc"),
        ("..", "_unnamed"),
        ("a/b\\c", "a_b_c"),
        ("CON", "CON_"),
        ("lpt1.txt", "lpt1.txt_"),
        ("_review", "_review_"),
        ("  glass   breaking  ", "glass breaking"),
        (".hidden", "hidden"),
        ("nul\x00byte", "nul_byte"),
        ("x" * 300, "x" * 100),
    ],
)
def test_labels_become_safe_folder_names(label: str, expected: str) -> None:
    name = folder_name(label)
    assert name == expected
    assert os.sep not in name and name not in (".", "..") and not name.startswith(".")


def test_unique_name_never_reuses_an_existing_or_planned_name(tmp_path: Path) -> None:
    (tmp_path / "take.wav").write_bytes(b"1")
    (tmp_path / "take (1).wav").write_bytes(b"2")
    taken: set[str] = set()
    first = unique_name(str(tmp_path), "take.wav", taken)
    second = unique_name(str(tmp_path), "take.wav", taken)
    assert Path(first).name == "take (2).wav" and Path(second).name == "take (3).wav"


def test_place_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"new")
    (tmp_path / "b").write_bytes(b"precious")
    with pytest.raises(NameTaken):
        place(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == b"precious"


def test_copy_verified_refuses_a_source_that_changed_and_leaves_no_partial(tmp_path: Path) -> None:
    src = tmp_path / "src.wav"
    src.write_bytes(b"original")
    digest = content_hash(src)
    src.write_bytes(b"changed!")
    tmp = tmp_path / "copy.partial"
    with pytest.raises(FilingError, match="changed since it was tagged"):
        copy_verified(str(src), str(tmp), digest)
    assert not tmp.exists() and src.read_bytes() == b"changed!"


def _db_with_file(tmp_path: Path, data: bytes = b"audio bytes") -> tuple[Database, Path, int, str]:
    db = migrate(Database(tmp_path / "lib.db"))
    src = tmp_path / "src" / "clip.wav"
    src.parent.mkdir()
    src.write_bytes(data)
    digest = content_hash(src)
    with db.transaction() as c:
        cur = c.execute(
            "INSERT INTO lib_files (path, size, mtime_ns, content_hash) VALUES (?,?,?,?)",
            (str(src), len(data), 0, digest),
        )
    return db, src, int(cur.lastrowid or 0), digest


def _planned(db: Database, src: Path, dst: Path, file_id: int, digest: str, action: str):  # type: ignore[no-untyped-def]
    run = start_run(db, "tag")
    return plan_op(
        db,
        run,
        file_id=file_id,
        action=action,
        src=str(src),
        dst=str(dst),
        out_root=str(dst.parent.parent),
        content_hash=digest,
        size=src.stat().st_size,
    )


@pytest.mark.parametrize("stage", ["planned", "partial written", "linked", "source removed"])
def test_recovery_finishes_or_rolls_back_a_move_killed_at_each_stage(tmp_path: Path, stage: str) -> None:
    db, src, file_id, digest = _db_with_file(tmp_path)
    dst = tmp_path / "out" / "label" / "clip.wav"
    op = _planned(db, src, dst, file_id, digest, "move")
    dst.parent.mkdir(parents=True)
    if stage == "partial written":
        Path(partial_path(str(dst), op.id)).write_bytes(b"audio by")  # half a copy
    if stage in ("linked", "source removed"):
        os.link(src, dst)
    if stage == "source removed":
        src.unlink()
    assert recover(db) == 1
    state = db.conn.execute("SELECT state FROM lib_ops WHERE id=?", (op.id,)).fetchone()[0]
    path = db.conn.execute("SELECT path FROM lib_files WHERE id=?", (file_id,)).fetchone()[0]
    files = sorted(
        p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".db" and "lib.db" not in p.name
    )
    assert files == ["clip.wav"]  # exactly one copy, no partial left
    if stage in ("planned", "partial written"):
        assert (state, path) == ("aborted", str(src)) and src.exists()
    else:
        assert (state, path) == ("done", str(dst)) and dst.exists() and not src.exists()


def test_recovery_keeps_a_verified_copy_and_drops_a_wrong_one(tmp_path: Path) -> None:
    db, src, file_id, digest = _db_with_file(tmp_path)
    good = _planned(db, src, tmp_path / "out" / "a" / "clip.wav", file_id, digest, "copy")
    bad = _planned(db, src, tmp_path / "out" / "b" / "clip.wav", file_id, digest, "copy")
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "b").mkdir(parents=True)
    (tmp_path / "out" / "a" / "clip.wav").write_bytes(src.read_bytes())
    (tmp_path / "out" / "b" / "clip.wav").write_bytes(b"someone else's file")
    recover(db)
    states = dict(db.conn.execute("SELECT id, state FROM lib_ops").fetchall())
    assert states == {good.id: "done", bad.id: "aborted"}
    assert (tmp_path / "out" / "b" / "clip.wav").read_bytes() == b"someone else's file"  # not ours: untouched
    placement = db.conn.execute("SELECT path FROM lib_placements").fetchall()
    assert [p[0] for p in placement] == [str(tmp_path / "out" / "a" / "clip.wav")]


def test_complete_op_moves_the_file_record(tmp_path: Path) -> None:
    db, src, file_id, digest = _db_with_file(tmp_path)
    dst = tmp_path / "out" / "x" / "clip.wav"
    op = _planned(db, src, dst, file_id, digest, "move")
    complete_op(db, op)
    assert db.conn.execute("SELECT path FROM lib_files").fetchone()[0] == str(dst)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    db = Database(tmp_path / "lib.db")
    with writer(db), pytest.raises(StoreError, match=r"another earmark process \(pid \d+\) is writing"):
        with writer(Database(tmp_path / "lib.db")):
            pass
    with writer(db):  # released
        pass


def test_start_run_marks_dead_runs_interrupted(tmp_path: Path) -> None:
    db = migrate(Database(tmp_path / "lib.db"))
    first = start_run(db, "tag")
    start_run(db, "tag")
    assert db.conn.execute("SELECT state FROM lib_runs WHERE id=?", (first,)).fetchone()[0] == "interrupted"


def test_migrations_apply_once(tmp_path: Path) -> None:
    db = Database(tmp_path / "lib.db")
    names = [m.name for m in __import__("earmark.library.schema", fromlist=["x"]).MIGRATIONS]
    assert db.migrate(__import__("earmark.library.schema", fromlist=["x"]).MIGRATIONS) == names
    assert names[0] == "library-001-tables" and "library-dups-001-fingerprints" in names
    assert names[1] == "library-002-embedding-seconds"
    assert migrate(db).migrate([]) == []
    tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"lib_files", "lib_embeddings", "lib_predictions", "lib_ops", "lib_runs", "lib_reviews"} <= tables


def test_window_index_ranks_files_by_their_best_window() -> None:
    rng = np.random.default_rng(0)
    dim = 16
    target = rng.standard_normal(dim).astype(np.float32)
    target /= np.linalg.norm(target)
    matrix = rng.standard_normal((10, dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix[7] = target  # file 3's third window is the match
    offsets = np.array([0, 2, 5, 9])  # files of 2, 3, 4 and 1 windows
    spans = np.array([[i * 5.0, i * 5.0 + 10] for i in range(10)], np.float32)
    index = WindowIndex(np.array([10, 11, 12, 13]), offsets, spans, matrix, ["a", "b", "c", "d"])
    found = index.query(target, 2)
    assert found[0][0] == 12 and found[0][2] == 7 and found[0][1] == pytest.approx(1.0)
    assert [f[0] for f in index.query(target, 4, exclude_hash="c")].count(12) == 0


def test_one_failing_operation_leaves_its_source_and_the_rest_goes_on(tmp_path: Path) -> None:
    from earmark.library.filing import FilingOptions, execute, plan_filing

    db = migrate(Database(tmp_path / "lib.db"))
    src = tmp_path / "src"
    src.mkdir()
    ids = []
    for name, data in (("a.wav", b"first"), ("b.wav", b"second"), ("c.wav", b"third")):
        (src / name).write_bytes(data)
        with db.transaction() as c:
            cur = c.execute(
                "INSERT INTO lib_files (path, size, mtime_ns, content_hash, status, top_label, top_score)"
                " VALUES (?,?,?,?,?,?,?)",
                (str(src / name), len(data), 0, content_hash(src / name), "auto", "dog", 0.9),
            )
        ids.append(int(cur.lastrowid or 0))
    out = tmp_path / "out"
    plan = plan_filing(db.conn, ids, FilingOptions(sort_into=out, move=True), 0.8)
    (src / "b.wav").write_bytes(b"edited after tagging")  # b no longer holds what was tagged
    run = start_run(db, "tag")
    results = list(execute(db, run, plan, str(out)))
    assert [r.state for r in results] == ["done", "failed", "done"]
    assert "changed since it was tagged" in (results[1].error or "")
    assert (src / "b.wav").read_bytes() == b"edited after tagging" and not (out / "dog" / "b.wav").exists()
    assert sorted(p.name for p in (out / "dog").iterdir()) == ["a.wav", "c.wav"]
    assert not list(out.rglob("*.earmark-partial"))
