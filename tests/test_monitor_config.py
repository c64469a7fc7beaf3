"""monitor.yaml: the shipped examples load; every mistake names its file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from earmark.errors import ConfigError
from earmark.monitor.config import load_config
from earmark.monitor.sources import mask_url

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
label_sets:
  bg: [speech, music, silence]
sources:
  - name: cam
    url: rtsp://u:p@cam/x
  - name: f
    file: sound.wav
    realtime: false
rules:
  - name: glass
    labels: [glass breaking]
    against: bg
    threshold: 0.6
    k: 2
    n: 3
sinks:
  - type: jsonl
    path: out/events.jsonl
"""


def test_home_security_example_loads() -> None:
    cfg = load_config(ROOT / "examples/monitor/home-security.yaml")
    assert [s.name for s in cfg.sources] == ["living-room", "hallway", "kids-room"]
    assert [s.kind for s in cfg.sources] == ["url", "url", "microphone"]
    rules = {r.name: r for r in cfg.rules}
    assert rules["child-help"].sources == ("kids-room",)
    assert rules["child-help"].threshold_for("screaming") == 0.8
    assert "silence" in rules["glass-breaking"].against
    assert [r.name for r in cfg.rules_for("kids-room")] == ["glass-breaking", "smoke-alarm", "child-help"]
    assert {s.type for s in cfg.sinks} == {"mqtt", "stdout"}
    assert cfg.metrics_port == 9108 and cfg.timezone == "Europe/Berlin"


def test_industrial_example_is_the_factory_rule() -> None:
    cfg = load_config(ROOT / "examples/monitor/industrial.yaml")
    bearing = next(r for r in cfg.rules if r.name == "bearing-starved")
    assert (bearing.k, bearing.n, bearing.threshold) == (3, 3, 0.75)
    assert cfg.clips.format == "flac" and cfg.outbox.max_pending == 50000
    webhook = next(s for s in cfg.sinks if s.type == "webhook")
    assert webhook.options.send_clips is True and webhook.options.secret


def test_relative_paths_and_label_sets_resolve(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.sources[1].target == str(tmp_path / "sound.wav") and cfg.sources[1].realtime is False
    assert cfg.rules[0].against == ("speech", "music", "silence")
    assert cfg.sinks[0].options == tmp_path / "out/events.jsonl"


def test_environment_variables_fill_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PW", "s3cret")
    text = GOOD.replace("rtsp://u:p@cam/x", "rtsp://u:${CAM_PW}@cam/x")
    assert load_config(tmp_path / "m.yaml", text).sources[0].target == "rtsp://u:s3cret@cam/x"
    monkeypatch.delenv("CAM_PW")
    with pytest.raises(
        ConfigError, match=r"line 5, sources\[0\]\.url: environment variable CAM_PW is not set"
    ):
        load_config(tmp_path / "m.yaml", text)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    threshold: 0.6",
            "    threshold: high",
            r"m\.yaml, line 13, rules\[0\]\.threshold: must be a number",
        ),
        ("    threshold: 0.6", "    threshold: 1.6", r"line 13, rules\[0\]\.threshold: must be from 0 to 1"),
        (
            "    threshold: 0.6",
            "    threshhold: 0.6",
            r"line 13, rules\[0\]\.threshhold: unknown key .*did you mean 'threshold'",
        ),
        ("    k: 2", "    k: 4", r"line 14, rules\[0\]\.k: cannot be more than n \(3\)"),
        (
            "    against: bg",
            "    against: back_ground",
            r"line 12, rules\[0\]\.against: no label set is named 'back_ground'",
        ),
        ("    against: bg\n", "", r"line 10, rules\[0\]: against is required"),
        (
            "    realtime: false",
            "    realtime: maybe",
            r"line 8, sources\[1\]\.realtime: must be true or false",
        ),
        ("    url: rtsp://u:p@cam/x", "    url: cam.local", r"line 5, sources\[0\]\.url: must be a URL"),
        ("  - type: jsonl", "  - type: pager", r"line 17, sinks\[0\]\.type: must be one of stdout, jsonl"),
        ("    path: out/events.jsonl\n", "", r"line 17, sinks\[0\]: path is required"),
        ("  - name: f\n", "  - name: cam\n", r"line 6, sources\[1\]\.name: name 'cam' is used twice"),
        (
            "    file: sound.wav",
            "    file: sound.wav\n    url: http://x/y",
            r"line 6, sources\[1\]: give exactly one of",
        ),
        (
            "    n: 3",
            "    n: 3\n    sources: [garage]",
            r"line 16, rules\[0\]\.sources\[0\]: no source is named 'garage'",
        ),
        (
            "    n: 3",
            "    n: 3\n    schedule: {active: [evening]}",
            r"line 16, rules\[0\]\.schedule: time range 'evening'",
        ),
        ("    n: 3", "    n: 3\n    n: 4", r"line 16, rules\[0\]\.n: is given twice"),
        ("sinks:", "sinks: [", r"line 17: not valid YAML"),
    ],
)
def test_errors_point_at_line_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError, match=expected):
        load_config(tmp_path / "m.yaml", GOOD.replace(old, new, 1))


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sources: at least one source"):
        load_config(tmp_path / "m.yaml", "")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "m.yaml", "- a\n- b\n")


def test_mask_url_hides_credentials() -> None:
    assert mask_url("rtsp://admin:hunter2@10.0.0.5:554/live") == "rtsp://***@10.0.0.5:554/live"
    masked = mask_url("https://cam.example/stream?token=abc123&res=hd")
    assert "abc123" not in masked and "res=hd" in masked
    assert mask_url("http://host/x.mp3") == "http://host/x.mp3"
