"""`earmark monitor` and `earmark events` from the command line (click's CliRunner, tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from earmark import synth
from earmark.cli import cli
from helpers import LABELS, ROOT, TINY_MODEL, encode


def test_check_validates_the_examples_and_reports_bad_files(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("home-security", "industrial"):
        r = runner.invoke(
            cli, ["monitor", "--config", str(ROOT / f"examples/monitor/{name}.yaml"), "--check"]
        )
        assert r.exit_code == 0, r.output
        assert "ok:" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sources:\n  - name: a\n    file: x.wav\nrules:\n  - labels: [glass]\n    against: [speech]\n"
        "    k: 2\n    n: one\n"
    )
    r = runner.invoke(cli, ["monitor", "--config", str(bad), "--check"])
    assert r.exit_code == 1
    assert "bad.yaml, line 8, rules[0].n: must be a whole number, not 'one'" in r.output


def test_quick_start_needs_an_alert_and_a_real_source(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["monitor", str(tmp_path / "nope.wav"), "-l", "a, b", "--alert", "a"])
    assert r.exit_code == 2 and "no such file" in r.output
    path = encode(synth.make("hum", 1.0), tmp_path / "hum.wav")
    r = runner.invoke(cli, ["monitor", str(path), "-l", "glass, speech"])
    assert r.exit_code == 2 and "--alert" in r.output
    r = runner.invoke(cli, ["monitor", "-l", "glass, speech", "--alert", "glass"])
    assert r.exit_code == 2 and "--config" in r.output


def test_quick_start_on_a_file_then_list_events(tmp_path: Path) -> None:
    wave = synth.sequence([("silence", 10.0), ("beep", 12.0), ("silence", 18.0)], seed=4)
    path = encode(wave, tmp_path / "door.wav")
    db = str(tmp_path / "m.db")
    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "monitor",
            str(path),
            "-l",
            ",".join(LABELS),
            "--alert",
            "beep",
            "--fast",
            "--json",
            "-m",
            str(TINY_MODEL),
            "--threads",
            "1",
            "--db",
            db,
            "--clips-dir",
            str(tmp_path / "c"),
            "--clip-format",
            "mp3",
        ],
    )
    assert r.exit_code == 0, r.output
    messages = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [m["event"] for m in messages] == ["start", "end"]
    assert messages[1]["source"] == "door.wav" and messages[1]["clip"].endswith(".mp3")

    r = runner.invoke(cli, ["events", "--db", db, "--json", "--since", "1h"])
    assert r.exit_code == 0, r.output
    (row,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert row["id"] == messages[0]["id"] and row["label"] == "beep" and Path(row["clip_path"]).is_file()
    r = runner.invoke(cli, ["events", "--db", db, "--label", "hum"])
    assert r.exit_code == 0 and "no events" in r.output
    r = runner.invoke(cli, ["events", "--db", db])
    assert r.exit_code == 0 and "door.wav" in r.stdout and "beep" in r.stdout
    r = runner.invoke(cli, ["events", "--db", db, "--since", "the other day"])
    assert r.exit_code == 2 and "not a time" in r.output


def test_a_source_that_cannot_be_read_fails_the_run(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really audio")
    cfg.write_text(
        "sources:\n  - name: broken\n    file: broken.wav\nrules:\n  - labels: [beep]\n"
        "    against: [hum, silence]\n"
    )
    r = CliRunner().invoke(
        cli,
        [
            "monitor",
            "--config",
            str(cfg),
            "-m",
            str(TINY_MODEL),
            "--threads",
            "1",
            "--db",
            str(tmp_path / "m.db"),
        ],
    )
    assert r.exit_code == 1
    assert "source broken:" in r.output and "broken.wav" in r.output


def test_a_beep_in_a_file_is_one_event_at_its_position_in_the_file(tmp_path: Path) -> None:
    """The issue's first try: a 12 s beep at 14-26 s in 40 s of noise, `earmark monitor FILE -l
    "beep, hum, noise" --alert beep`: one event, printed at its place in the file, 12 s long."""
    import re

    wave = synth.sequence([("noise", 14.0), ("beep", 12.0), ("noise", 14.0)], seed=0)
    path = encode(wave, tmp_path / "beep.wav")
    args = ["monitor", str(path), "-l", "beep, hum, noise", "--alert", "beep", "--fast"]
    args += ["-m", str(TINY_MODEL), "--threads", "1", "--db", str(tmp_path / "m.db")]
    r = CliRunner().invoke(cli, [*args, "--clips-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    lines = [x for x in r.stdout.splitlines() if "  beep  " in x]
    assert [x.split("  ")[3].split(" ")[0] for x in lines] == ["started", "ended"], r.stdout

    def position(line: str) -> float:
        m = re.match(r"(\d\d):(\d\d):(\d\d\.\d)  ", line)
        assert m, f"a file read as fast as possible is timed by its position, not the clock: {line}"
        return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])

    assert abs(position(lines[0]) - 14.0) <= 0.5, f"the beep starts at 00:00:14.0: {lines[0]}"
    assert abs(position(lines[1]) - 26.0) <= 0.5, f"the beep ends at 00:00:26.0: {lines[1]}"
    seconds = float(re.search(r", (\d+\.\d) s\)", lines[1])[1])  # type: ignore[index]
    assert 11.0 <= seconds <= 13.0, f"the beep lasts 12 s: {lines[1]}"
