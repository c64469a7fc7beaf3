"""Filing tagged files into folders: dry run, copy, move, collisions, undo, read-only and cross-filesystem."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from earmark.cli import cli
from earmark.store import Database
from helpers import LABELS, TINY_MODEL
from library_data import tree_hashes
from library_fs import other_filesystem, read_only_folder


def tag(root: Path, db: Path, *extra: str) -> object:
    args = ["tag", str(root), "-l", ",".join(LABELS), "--db", str(db), "-m", str(TINY_MODEL), *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def undo(db: Path, *run_ids: int) -> object:
    return CliRunner().invoke(cli, ["undo", *map(str, run_ids), "--db", str(db)], catch_exceptions=False)


def last_run(db: Path) -> int:
    return int(Database(db).conn.execute("SELECT max(id) FROM lib_runs WHERE kind='tag'").fetchone()[0])


def hash_counts(*roots: Path) -> Counter[str]:
    return Counter(h for root in roots for h in tree_hashes(root).values())


def expected_folders(db: Path, root: Path) -> dict[str, str]:
    """{file name: folder it should be filed into} from the stored results."""
    rows = (
        Database(db)
        .conn.execute("SELECT path, status, top_label FROM lib_files WHERE path LIKE ?", (f"{root}/%",))
        .fetchall()
    )
    return {Path(r[0]).name: r[2] if r[1] == "auto" else "_review" for r in rows if r[1] != "error"}


def test_dry_run_shows_the_plan_and_changes_nothing(library_copy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = library_copy
    before = tree_hashes(root)
    result = tag(root, db, "--sort-into", str(tmp_path / "out"), "--dry-run", "--move")
    assert result.exit_code == 0, result.output
    assert tree_hashes(root) == before and not (tmp_path / "out").exists()
    plan = [line for line in result.stdout.splitlines() if line.startswith("move ")]
    assert len(plan) == len(manifest) - 4 and "nothing changed" in result.stderr
    assert Database(db).conn.execute("SELECT count(*) FROM lib_ops").fetchone()[0] == 0


def test_copy_files_by_label_then_undo_restores(library_copy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = library_copy
    out = tmp_path / "out"
    before = tree_hashes(root)
    result = tag(root, db, "--sort-into", str(out))
    assert result.exit_code == 0, result.output
    assert tree_hashes(root) == before  # copies leave the sources alone
    want = expected_folders(db, root)
    filed = {p.name: p.parent.name for p in out.rglob("*") if p.is_file()}
    assert filed == want
    assert set(filed.values()) <= {*LABELS, "_review"}
    assert hash_counts(out) == Counter(h for rel, h in before.items() if Path(rel).name in want)
    again = tag(root, db, "--sort-into", str(out))  # a re-run copies nothing twice
    assert again.exit_code == 0 and "filed 0, failed 0" in again.stderr
    result = undo(db, last_run(db) - 1)
    assert result.exit_code == 0, result.output
    assert f"{len(want)} removed" in result.stdout
    assert tree_hashes(root) == before and not any(p.is_file() for p in out.rglob("*"))


def test_move_collisions_and_undo_put_every_file_back(library_copy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = library_copy
    # two different files with one name in different folders: the second must become "name (1)"
    twin = next(rel for rel, k in manifest.items() if k == "hum" and "/" not in rel)
    (root / "elsewhere").mkdir()
    shutil.copy(
        root / next(rel for rel, k in manifest.items() if k == "hum" and "/" in rel),
        root / "elsewhere" / twin,
    )
    out = tmp_path / "out"
    before = tree_hashes(root)
    result = tag(root, db, "--sort-into", str(out), "--move")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "hum").glob(f"{Path(twin).stem}*")) == [
        f"{Path(twin).stem} (1){Path(twin).suffix}",
        twin,
    ]
    assert hash_counts(root, out) == Counter(before.values())  # nothing lost, nothing duplicated
    left = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert all(manifest.get(rel) in ("error", None) or before[rel] in hash_counts(out) for rel in left)
    paths = [r[0] for r in Database(db).conn.execute("SELECT path FROM lib_files WHERE status<>'error'")]
    assert all(os.path.exists(p) for p in paths if p.startswith(str(out)))  # records follow the moves
    result = undo(db, last_run(db))
    assert result.exit_code == 0, result.output
    assert tree_hashes(root) == before and not any(p.is_file() for p in out.rglob("*"))


def test_review_in_place_leaves_uncertain_files(library_copy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = library_copy
    result = tag(root, db, "--sort-into", str(tmp_path / "out"), "--move", "--review-in-place")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out" / "_review").exists()
    review = (
        Database(db)
        .conn.execute("SELECT path FROM lib_files WHERE status='review' AND path LIKE ?", (f"{root}/%",))
        .fetchall()
    )
    assert review and all(os.path.exists(r[0]) for r in review)


def test_read_only_destination_fails_cleanly(library_copy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = library_copy
    before = tree_hashes(root)
    with read_only_folder(tmp_path) as ro:
        result = CliRunner().invoke(
            cli,
            [
                "tag",
                str(root),
                "-l",
                ",".join(LABELS),
                "--db",
                str(db),
                "-m",
                str(TINY_MODEL),
                "--sort-into",
                str(ro / "out"),
                "--move",
            ],
        )
    assert result.exit_code == 1
    assert "cannot write to" in result.stderr and "no file was copied or moved" in result.stderr
    assert tree_hashes(root) == before
    conn = Database(db).conn
    assert conn.execute("SELECT count(*) FROM lib_ops").fetchone()[0] == 0
    assert conn.execute("SELECT state FROM lib_runs ORDER BY id DESC").fetchone()[0] == "failed"


def test_move_across_filesystems_verifies_and_undoes(library_copy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = library_copy
    before = tree_hashes(root)
    with other_filesystem(tmp_path) as other:
        assert os.stat(other).st_dev != os.stat(root).st_dev
        out = other / "out"
        result = tag(root, db, "--sort-into", str(out), "--move")
        assert result.exit_code == 0, result.output
        assert hash_counts(root, out) == Counter(before.values())
        assert not list(out.rglob("*.earmark-partial"))
        ops = Database(db).conn.execute("SELECT action, state FROM lib_ops").fetchall()
        assert {tuple(o) for o in ops} == {("move", "done")}
        result = undo(db, last_run(db))
        assert result.exit_code == 0, result.output
        assert tree_hashes(root) == before


def test_undo_refuses_unknown_runs_and_lists_runs(library_copy) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db = library_copy
    result = CliRunner().invoke(cli, ["undo", "999", "--db", str(db)])
    assert result.exit_code == 1 and "there is no run 999" in result.stderr
    listing = CliRunner().invoke(cli, ["undo", "--list", "--db", str(db)])
    assert listing.exit_code == 0 and json.dumps("embedded")[1:-1] in listing.stdout
