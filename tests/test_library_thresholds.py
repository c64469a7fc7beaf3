"""Calibrated per-label thresholds (earmark calibrate) decide auto vs review in `earmark tag`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from earmark.cli import cli
from earmark.store import Database
from helpers import sound_file


def test_tag_uses_per_label_thresholds_over_min_confidence(tiny_model, tmp_path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(2):
        sound_file(lib, "beep", 3, ".wav", seed=i)
    sound_file(lib, "hum", 3, ".wav")
    db = tmp_path / "lib.db"
    # "beep" and "tone" name one sound for the tiny model: beeps score ~0.5 and go to review at 0.8 ...
    args = ["tag", str(lib), "-l", "beep, tone, hum", "-m", tiny_model, "--db", str(db)]
    r = CliRunner().invoke(cli, [*args, "--sort-into", str(tmp_path / "out1")])
    assert r.exit_code == 0, r.output
    rows = dict(Database(db).conn.execute("SELECT path, status FROM lib_files").fetchall())
    assert sorted(rows.values()) == ["auto", "review", "review"]
    assert len(list((tmp_path / "out1" / "_review").iterdir())) == 2
    # ... and a calibrated 0.4 for both words files them as confident
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"beep": 0.4, "tone": 0.4}))
    r = CliRunner().invoke(
        cli, [*args, "--thresholds", str(thresholds), "--sort-into", str(tmp_path / "out2")]
    )
    assert r.exit_code == 0, r.output
    rows = dict(Database(db).conn.execute("SELECT path, status FROM lib_files").fetchall())
    assert sorted(rows.values()) == ["auto", "auto", "auto"]
    assert not (tmp_path / "out2" / "_review").exists()
