"""What the command line prints for people: detection scores, the run list, help at 80 columns, ``~``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from earmark import synth
from earmark.cli import cli
from helpers import encode, sound_file


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def test_aggregate_max_reads_as_per_label_detection_scores(runner, tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    wave = synth.sequence([("beep", 10), ("hum", 10)], seed=0)
    f = encode(0.9 * wave / np.abs(wave).max(), tmp_path / "beep-then-hum.wav")
    r = runner.invoke(
        cli,
        [
            "classify",
            str(f),
            "-l",
            "beep, hum, noise",
            "-m",
            tiny_model,
            "--aggregate",
            "max",
            "--backend",
            "torch",
        ],
    )
    assert r.exit_code == 0, r.output
    head = r.output.splitlines()[0]
    assert "detected:" in head and "beep" in head and "hum" in head, (
        f"a file with a beep and a hum should say both were detected, not pick one: {head!r}"
    )
    assert "peak (best window)" in r.output, f"the column says what the number is:\n{r.output}"
    assert "per-label detection scores" in r.output and "uncertain" not in r.output, r.output


def test_aggregate_mean_still_ranks(runner, tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = sound_file(tmp_path, "beep", 3)
    r = runner.invoke(
        cli, ["classify", str(f), "-l", "beep, hum, noise", "-m", tiny_model, "--backend", "torch"]
    )
    assert r.exit_code == 0, r.output
    assert "detection scores" not in r.output and "→ beep" in r.output, r.output


def test_undo_list_is_a_table_and_json_lines(runner, tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lib, out, db = tmp_path / "lib", tmp_path / "sorted", tmp_path / "lib.db"
    lib.mkdir()
    for kind in ("beep", "hum"):
        sound_file(lib, kind, 2)
    tagged = runner.invoke(
        cli,
        [
            "tag",
            str(lib),
            "-l",
            "beep, hum",
            "--db",
            str(db),
            "-m",
            tiny_model,
            "--backend",
            "torch",
            "--sort-into",
            str(out),
        ],
    )
    assert tagged.exit_code == 0, tagged.output
    table = runner.invoke(cli, ["undo", "--list", "--db", str(db)])  # Rich's 80 columns: no terminal here
    assert table.exit_code == 0, table.output
    assert "{" not in table.stdout and "'" not in table.stdout, f"raw Python dicts:\n{table.stdout}"
    lines = table.stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.lstrip().startswith("━"))

    def column(rows: list[str], sep: str, i: int) -> str:
        return "".join(cells[i].strip() for cells in (re.split(sep, r) for r in rows) if len(cells) > i)

    header = [column(lines[:rule], "[┃|]", i) for i in range(7)]
    assert header == ["run", "kind", "state", "started", "filed", "into", "files"], (
        f"the run list has no table header:\n{table.stdout}"
    )
    shown = column(lines[rule + 1 :], "[│|]", header.index("into"))
    assert shown == f"{out}(copy)", f"the folder filed into is not shown whole ({shown!r}):\n{table.stdout}"
    as_json = runner.invoke(cli, ["undo", "--list", "--json", "--db", str(db)])
    assert as_json.exit_code == 0, as_json.output
    runs = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(runs) == 1 and runs[0]["kind"] == "tag" and runs[0]["sort_into"] == str(out), runs
    assert runs[0]["files_moved"] == 2 and runs[0]["state"] == "done", runs


def test_search_summary_is_whole_at_80_columns(runner) -> None:  # type: ignore[no-untyped-def]
    r = runner.invoke(cli, ["--help"], terminal_width=80)
    assert r.exit_code == 0, r.output
    search = next(line for line in r.output.splitlines() if line.strip().startswith("search "))
    assert search.rstrip().endswith("text description."), f"search's summary is cut: {search!r}"


def test_tag_paths_expands_the_home_folder(classifier, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from earmark.library import TagOptions, tag_paths
    from earmark.store import Database

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "Sounds").mkdir()
    sound_file(tmp_path / "Sounds", "beep", 2)
    db = Database(tmp_path / "lib.db")
    try:
        list(tag_paths(db, ["~/Sounds"], TagOptions(labels=("beep", "hum")), classifier))
        rows = db.conn.execute("SELECT path FROM lib_files").fetchall()
    finally:
        db.close()
    assert [Path(r["path"]).name for r in rows] == ["beep-0.wav"], (
        f"'~/Sounds' found {[r['path'] for r in rows]}: the folder under the home was not read"
    )
