"""Search, similar, review, export: library, CLI and REST, on the tagged generated library."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from earmark.cli import cli
from earmark.library.export import export, to_string
from earmark.library.review import apply_decisions, decide, review_queue
from earmark.library.search import search_text, similar_to
from earmark.store import Database
from helpers import LABELS, TINY_MODEL


def kind_of(path: str) -> str:
    return Path(path).name.split("_")[0].split(" ")[0]


@pytest.mark.parametrize("kind", ["beep", "hum", "noise", "clicks", "chirp", "silence"])
def test_text_search_puts_the_right_sound_on_top(tagged_library, classifier, kind) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path, _ = tagged_library
    hits = search_text(Database(db_path), classifier, kind, k=10)
    assert len(hits) == 10
    assert [kind_of(h.path) for h in hits[:8]].count(kind) == 8 or kind_of(hits[0].path) == kind
    assert sum(kind_of(h.path) == kind for h in hits) >= 9
    assert hits == sorted(hits, key=lambda h: -h.score)
    assert all(0 <= h.start_s < h.end_s for h in hits)


def test_search_gives_the_best_window_offset(classifier, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from earmark import synth
    from earmark.library import TagOptions, tag_paths
    from helpers import encode

    encode(synth.sequence([("silence", 10), ("beep", 10)], seed=5), tmp_path / "quiet then beep.flac")
    encode(synth.sequence([("beep", 10), ("hum", 10)], seed=6), tmp_path / "beep then hum.flac")
    db = Database(tmp_path / "db")
    list(tag_paths(db, [tmp_path], TagOptions(labels=tuple(LABELS)), classifier))
    hits = {Path(h.path).name: h for h in search_text(db, classifier, "beep", k=5)}
    assert (hits["quiet then beep.flac"].start_s, hits["quiet then beep.flac"].end_s) == (10.0, 20.0)
    assert (hits["beep then hum.flac"].start_s, hits["beep then hum.flac"].end_s) == (0.0, 10.0)
    assert search_text(db, classifier, "hum", k=1)[0].start_s == 10.0


def test_similar_to_a_hum_lists_hums(tagged_library, classifier) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path, _ = tagged_library
    hum = next(rel for rel, k in manifest.items() if k == "hum")
    hits = similar_to(Database(db_path), classifier, str(root / hum), k=10)
    assert str(root / hum) not in [h.path for h in hits]
    assert sum(kind_of(h.path) == "hum" for h in hits) >= 9 and kind_of(hits[0].path) == "hum"


def test_similar_to_a_file_outside_the_library(tagged_library, classifier, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from helpers import sound_file

    root, manifest, db_path, _ = tagged_library
    outside = sound_file(tmp_path, "chirp", 2.0, ".ogg", seed=777)
    hits = similar_to(Database(db_path), classifier, str(outside), k=5)
    assert [kind_of(h.path) for h in hits].count("chirp") >= 4


def test_cli_search_and_similar(tagged_library) -> None:  # type: ignore[no-untyped-def]
    root, manifest, db_path, _ = tagged_library
    runner = CliRunner()
    result = runner.invoke(cli, ["search", "clicks", "--db", str(db_path), "-k", "5", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 5 and kind_of(rows[0]["path"]) == "clicks" and rows[0]["score"] >= rows[-1]["score"]
    chirp = next(rel for rel, k in manifest.items() if k == "chirp")
    result = runner.invoke(cli, ["similar", str(root / chirp), "--db", str(db_path), "-k", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("chirp") >= 3 and "files in" in result.stderr


def test_search_on_an_empty_library_says_so(tmp_path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, ["search", "beep", "--db", str(tmp_path / "empty.db"), "-m", tiny_model])
    assert result.exit_code == 0 and "run `earmark tag" in result.stderr


def test_export_formats(tagged_library, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    root, manifest, db_path, _ = tagged_library
    db = Database(db_path)
    rows = list(csv.DictReader(io.StringIO(to_string(db, "csv"))))
    assert len(rows) == len(manifest)
    by_path = {r["path"]: r for r in rows}
    beep = by_path[str(root / next(rel for rel, k in manifest.items() if k == "beep"))]
    assert set(json.loads(beep["scores"])) == set(LABELS) and beep["content_hash"]
    lines = [json.loads(x) for x in to_string(db, "jsonl").splitlines()]
    assert {x["status"] for x in lines} == {"auto", "review", "error"} and isinstance(
        lines[0]["scores"], dict
    )
    windows = [json.loads(x) for x in to_string(db, "jsonl", windows=True).splitlines()]
    assert len(windows) > len(manifest) - 4  # the 12 s clips have two windows
    assert export(db, str(tmp_path / "lib.parquet"), "parquet") == len(manifest)
    table = pq.read_table(tmp_path / "lib.parquet")
    assert table.num_rows == len(manifest) and "top_label" in table.column_names
    result = CliRunner().invoke(cli, ["export", "--db", str(db_path), "--format", "parquet"])
    assert result.exit_code == 2 and "-o FILE.parquet" in result.output


@pytest.fixture
def decided(library_copy, tmp_path):  # type: ignore[no-untyped-def]
    """A copy of the library, moved into OUT (uncertain files into OUT/_review)."""
    root, manifest, db = library_copy
    out = tmp_path / "out"
    args = [
        "tag",
        str(root),
        "-l",
        ",".join(LABELS),
        "--db",
        str(db),
        "-m",
        str(TINY_MODEL),
        "--sort-into",
        str(out),
        "--move",
    ]
    assert CliRunner().invoke(cli, args).exit_code == 0
    return root, db, out


def test_review_cli_one_key_each_and_filing_follows(decided) -> None:  # type: ignore[no-untyped-def]
    root, db_path, out = decided
    db = Database(db_path)
    queue = [i for i in review_queue(db) if i.path.startswith(str(out))]
    assert len(queue) >= 3 and all(len(i.top) == 3 for i in queue)
    # accept the first, relabel the second to label 2 ("hum"), skip the third, then quit
    keys = "a" + "2" + "s" + "q"
    result = CliRunner().invoke(cli, ["review", "--db", str(db_path), "--no-play"], input=keys)
    assert result.exit_code == 0, result.output
    assert "1 accepted, 1 relabelled, 1 skipped; 2 files re-filed" in result.stderr
    first = db.conn.execute(
        "SELECT path, review_label, top_label FROM lib_files WHERE id=?", (queue[0].file_id,)
    ).fetchone()
    second = db.conn.execute(
        "SELECT path, review_label FROM lib_files WHERE id=?", (queue[1].file_id,)
    ).fetchone()
    assert (
        first["review_label"] == first["top_label"] and Path(first["path"]).parent == out / first["top_label"]
    )
    assert second["review_label"] == LABELS[1] and Path(second["path"]).parent == out / LABELS[1]
    assert Path(first["path"]).is_file() and Path(second["path"]).is_file()
    decisions = [r[0] for r in db.conn.execute("SELECT decision FROM lib_reviews ORDER BY id")]
    assert decisions == ["accept", "relabel", "skip"]
    assert review_queue(db)[-1].file_id == queue[2].file_id  # skipped comes back, last


def test_review_prompt_for_a_new_label_and_undo(decided) -> None:  # type: ignore[no-untyped-def]
    root, db_path, out = decided
    db = Database(db_path)
    item = next(i for i in review_queue(db) if i.path.startswith(str(out)))
    result = CliRunner().invoke(
        cli, ["review", "--db", str(db_path), "--no-play", "--limit", "1"], input="x" + "r" + "door slam\n"
    )
    assert result.exit_code == 0, result.output
    assert "? a accept" in result.stdout  # an unknown key shows the keys
    path = db.conn.execute("SELECT path FROM lib_files WHERE id=?", (item.file_id,)).fetchone()[0]
    assert Path(path) == out / "door slam" / Path(item.path).name and Path(path).is_file()
    run = db.conn.execute("SELECT max(id) FROM lib_runs WHERE kind='review'").fetchone()[0]
    assert CliRunner().invoke(cli, ["undo", str(run), "--db", str(db_path)]).exit_code == 0
    assert Path(item.path).is_file() and not (out / "door slam").exists()


def test_decisions_from_the_api_are_applied_later(decided) -> None:  # type: ignore[no-untyped-def]
    root, db_path, out = decided
    db = Database(db_path)
    item = next(i for i in review_queue(db) if i.path.startswith(str(out)))
    assert decide(db, item.file_id, "relabel", label="chirp", via="api") == "chirp"
    results = list(apply_decisions(db))
    assert [r.state for r in results] == ["done"] and (out / "chirp" / Path(item.path).name).is_file()


def test_review_plays_each_file_with_the_player_found(decided, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from earmark.cli.library_review import _Player, find_player

    root, db_path, out = decided
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    played = tmp_path / "played.txt"
    # a stand-in for ffplay (no sound card here): records what it was asked to play
    (bin_dir / "ffplay").write_text(f'#!/bin/sh\nfor a; do last="$a"; done\necho "$last" >> "{played}"\n')
    (bin_dir / "ffplay").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cmd = find_player()
    assert cmd is not None and cmd[0] == "ffplay" and "-nodisp" in cmd
    first = review_queue(Database(db_path))[0]
    player = _Player(cmd)
    player.play(first.path)
    assert player.proc is not None and player.proc.wait(timeout=10) == 0
    assert played.read_text().splitlines() == [first.path]
    # the command plays each file and still takes one key per file
    result = CliRunner().invoke(
        cli, ["review", "--db", str(db_path), "--play", "--limit", "1"], input="p" + "s"
    )
    assert result.exit_code == 0 and "1 skipped" in result.stderr
