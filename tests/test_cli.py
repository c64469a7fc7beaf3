"""The earmark command line, through click's runner and a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from earmark import synth
from earmark.cli import cli
from helpers import LABELS, encode, sound_file


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def test_classify_prints_a_table_with_the_answer(runner, tiny_model, tmp_path) -> None:
    f = sound_file(tmp_path, "beep", 3, ".mp3")
    r = runner.invoke(cli, ["classify", str(f), "-l", "beep, hum, noise", "-m", tiny_model])
    assert r.exit_code == 0, r.output
    assert "beep-0.mp3  (3.0 s) → beep" in r.output
    assert r.output.splitlines()[2].split()[:2] == ["beep", "100.0%"]
    assert "100.0%" in r.output or "99." in r.output


def test_classify_json_lines_for_many_files_and_a_folder(runner, tiny_model, tmp_path) -> None:
    for kind in ("hum", "noise"):
        sound_file(tmp_path / "lib", kind, 2, ".wav") if (tmp_path / "lib").exists() else (
            (tmp_path / "lib").mkdir(),
            sound_file(tmp_path / "lib", kind, 2, ".wav"),
        )
    (tmp_path / "lib" / "notes.txt").write_text("not audio, skipped by extension")
    r = runner.invoke(
        cli, ["classify", str(tmp_path / "lib"), "-l", ",".join(LABELS), "-m", tiny_model, "--json"]
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [(row["source"].rsplit("/", 1)[1], row["label"]) for row in rows] == [
        ("hum-0.wav", "hum"),
        ("noise-0.wav", "noise"),
    ]


def test_classify_csv_has_a_column_per_label(runner, tiny_model, tmp_path) -> None:
    f = sound_file(tmp_path, "chirp", 2, ".flac")
    r = runner.invoke(cli, ["classify", str(f), "-l", "chirp", "-l", "hum", "-m", tiny_model, "--csv"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert rows[0]["label"] == "chirp" and float(rows[0]["chirp"]) > 0.7 and rows[0]["uncertain"] == "0"
    assert set(rows[0]) == {"file", "label", "top", "probability", "uncertain", "chirp", "hum"}


@pytest.mark.slow
def test_timeline_for_long_audio(runner, tiny_model, tmp_path) -> None:
    f = encode(synth.sequence([("hum", 10), ("clicks", 10), ("beep", 10)], seed=7), tmp_path / "three.ogg")
    r = runner.invoke(cli, ["classify", str(f), "-l", ",".join(LABELS), "-m", tiny_model, "--timeline"])
    assert r.exit_code == 0, r.output
    lines = [line.strip() for line in r.output.splitlines() if "–" in line]
    assert [line.split()[1] for line in lines] == ["hum", "clicks", "beep"]
    assert lines[0].startswith("00:00.0–00:10.0")


def test_one_bad_file_is_reported_and_the_rest_go_on(runner, tiny_model, tmp_path) -> None:
    good = sound_file(tmp_path, "noise", 2, ".wav")
    bad = tmp_path / "photo.wav"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    r = runner.invoke(cli, ["classify", str(bad), str(good), "-l", "noise, beep", "-m", tiny_model, "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout.strip())["label"] == "noise"
    assert f"error: {bad}: " in r.stderr and "1 of 2 file(s) failed" in r.stderr


def test_labels_file_and_label_errors(runner, tiny_model, tmp_path) -> None:
    f = sound_file(tmp_path, "hum", 2, ".wav")
    labels = tmp_path / "labels.txt"
    labels.write_text("# my labels\nhum\nbeep  # an alarm\n\nhum\n")
    r = runner.invoke(cli, ["classify", str(f), "--labels-file", str(labels), "-m", tiny_model, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["labels"] == ["hum", "beep"]
    r = runner.invoke(cli, ["classify", str(f), "-l", "hum", "-m", tiny_model])
    assert r.exit_code == 1 and "need at least 2 labels" in r.stderr


def test_bad_option_values_fail_before_work(runner, tiny_model, tmp_path) -> None:
    f = sound_file(tmp_path, "hum", 2, ".wav")
    r = runner.invoke(cli, ["classify", str(f), "-l", "a,b", "-m", tiny_model, "--window-s", "30"])
    assert r.exit_code == 1 and "window_s must be between 0 and 10" in r.stderr
    r = runner.invoke(cli, ["classify", str(f), "-l", "a,b", "-m", tiny_model, "--threshold", "2"])
    assert r.exit_code == 2 and "threshold" in r.stderr


def test_stdin_input(runner, tiny_model, tmp_path) -> None:
    data = sound_file(tmp_path, "chirp", 2, ".mp3").read_bytes()
    r = runner.invoke(cli, ["classify", "-", "-l", ",".join(LABELS), "-m", tiny_model, "--json"], input=data)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["label"] == "chirp"


def test_model_commands(runner, tiny_model) -> None:
    r = runner.invoke(cli, ["model", "info", tiny_model, "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["fused"] is True
    r = runner.invoke(cli, ["model", "import", tiny_model, "--name", "tiny"])
    assert r.exit_code == 0 and "use it with --model tiny" in r.output
    r = runner.invoke(cli, ["model", "list"])
    assert "clap-htsat-fused" in r.output and "not downloaded" in r.output and "tiny" in r.output
    r = runner.invoke(cli, ["model", "pull", "clap-htsat-fused"])  # HF_HUB_OFFLINE=1 in tests
    assert r.exit_code == 1 and "earmark model import FOLDER" in r.stderr


def test_help_is_instant_and_light() -> None:
    code = (
        "import sys; from earmark.cli import cli; print(sorted({'torch','transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    r = subprocess.run(
        [sys.executable, "-m", "earmark", "--help"], capture_output=True, text=True, check=True
    )
    assert "classify" in r.stdout and "model" in r.stdout


def test_classify_gives_the_model_streams_only_when_several_windows_will_be_in_flight(tmp_path: Path) -> None:
    """One short clip: every model thread on it (fastest answer); more files or long audio: streams."""
    from earmark.cli.classify_cmd import _many_windows

    short = str(sound_file(tmp_path, "beep", 4.0))
    long = str(sound_file(tmp_path, "noise", 25.0, seed=1))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all")
    assert not _many_windows([short], 10.0), "a 4 s clip is one window"
    assert _many_windows([long], 10.0), "25 s at 10 s windows keeps several in flight"
    assert _many_windows([short], 2.0), "2 s windows cut a 4 s clip into several"
    assert _many_windows([short, short], 10.0)
    assert _many_windows(["-"], 10.0), "stdin may be long: its length is not known up front"
    assert not _many_windows([str(garbage)], 10.0), "a file that fails fails later, with its message"
