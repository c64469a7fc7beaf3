"""`earmark monitor` with a few-shot classifier pack and with calibrated thresholds files.

The pack (``fitted_pack``) learned "class A" (beeps) and "class B" (hums) from five
examples each; the tiny model never read those words, so a zero-shot rule on them
cannot fire and a pack rule can.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from earmark import synth
from earmark.adapt.packs import load_pack
from earmark.cli import cli
from earmark.errors import ConfigError
from earmark.monitor.config import MonitorConfig, load_config
from earmark.monitor.rules import Rule
from earmark.monitor.runner import Monitor, WindowResult
from earmark.monitor.sources import SourceSpec
from earmark.store import Database
from helpers import TINY_MODEL, encode

BEEP_AT = 10.0


@pytest.fixture(scope="module")
def hum_beep_hum(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 s: hum, then 12 s of beep from 10 s, then hum again."""
    wave = synth.sequence([("hum", BEEP_AT), ("beep", 12.0), ("hum", 18.0)], seed=4)
    return encode(wave, tmp_path_factory.mktemp("monitor-pack") / "pump.wav")


def _monitor(args: list[str]) -> tuple[int, list[dict[str, Any]], str]:
    r = CliRunner().invoke(cli, ["monitor", *args, "-m", str(TINY_MODEL), "--threads", "1"])
    messages = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    return r.exit_code, messages, r.output


def test_a_pack_rule_alerts_where_a_zero_shot_rule_on_the_same_words_cannot(
    fitted_pack: Path, hum_beep_hum: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "pump.yaml"
    cfg.write_text(f"""
sources:
  - name: pump
    file: {hum_beep_hum}
    realtime: false
window_s: 2   # about the length of the pack's examples (1 s clips)
rules:
  - name: learned
    pack: {fitted_pack}
    labels: [class A]
    k: 2
    n: 2
  - name: words
    labels: [class A]
    against: [class B, noise]
    k: 2
    n: 2
sinks:
  - type: stdout
    format: json
""")
    code, messages, out = _monitor(["--config", str(cfg), "--db", str(tmp_path / "m.db")])
    assert code == 0, out
    assert [(m["event"], m["rule"], m["label"]) for m in messages] == [
        ("start", "learned", "class A"),
        ("end", "learned", "class A"),
    ]
    assert abs(messages[1]["start_s"] - BEEP_AT) <= 2.0, messages[1]


def test_pack_rule_scores_every_window_as_classify_with_the_pack(
    classifier: Any, fitted_pack: Path, hum_beep_hum: Path, tmp_path: Path
) -> None:
    pack = load_pack(fitted_pack)
    rule = Rule(name="learned", labels=("class A",), against=("class B", "noise"), pack=pack)
    got: dict[float, list[float]] = {}

    def record(w: WindowResult) -> None:
        got[w.start_s] = [w.probs["learned"][x] for x in pack.labels]

    source = SourceSpec(name="pump", kind="file", target=str(hum_beep_hum), realtime=False, gate_dbfs=None)
    Monitor(
        MonitorConfig(sources=(source,), rules=(rule,), hop_s=2.0),
        classifier,
        db=Database(tmp_path / "m.db"),
        sinks=[],
        on_window=record,
    ).run()
    expected = classifier.classify(hum_beep_hum, pack=pack, hop_s=2.0)
    assert len(got) == len(expected.windows) == 16
    for w in expected.windows:
        np.testing.assert_allclose(
            got[w.start_s], w.probabilities, atol=2e-6, err_msg=f"window at {w.start_s} s"
        )
    # a window unlike every class (half hum, half beep) falls under the pack's "none of these"
    assert any(max(p) < 0.5 for p in got.values())


def test_thresholds_file_for_every_rule_and_for_one(hum_beep_hum: Path, tmp_path: Path) -> None:
    # "beep" and "tone" name one sound for the tiny model: a beep scores about 0.5 for each
    quick = [
        str(hum_beep_hum),
        "-l",
        "beep, tone, hum, silence",
        "--alert",
        "beep",
        "-t",
        "0.75",
        "-k",
        "2",
        "-n",
        "2",
        "--fast",
        "--json",
        "--db",
        str(tmp_path / "m.db"),
    ]
    code, messages, out = _monitor(quick)
    assert code == 0 and messages == [], out
    thresholds = tmp_path / "calibrated.json"
    thresholds.write_text(json.dumps({"beep": 0.4, "hum": 0.9}))
    code, messages, out = _monitor([*quick, "--thresholds", str(thresholds)])
    assert code == 0, out
    assert [(m["event"], m["label"]) for m in messages] == [("start", "beep"), ("end", "beep")]

    # in a config: a rule may name the file; a rule's own mapping wins over the shared file
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"""
sources: [{{name: pump, file: {hum_beep_hum}, realtime: false}}]
rules:
  - {{name: from-file, labels: [beep], against: [tone, hum, silence], threshold: 0.75, thresholds: calibrated.json}}
  - {{name: own-wins, labels: [beep], against: [tone, hum, silence], thresholds: {{beep: 0.99}}}}
""")
    config = load_config(cfg, thresholds=(("beep", 0.3),))
    assert [r.label_thresholds for r in config.rules] == [(("beep", 0.4),), (("beep", 0.99),)]
    cfg.write_text(cfg.read_text().replace("thresholds: calibrated.json", "thresholds: nope.json"))
    with pytest.raises(
        ConfigError, match=r"m.yaml, line 4, rules\[0\].thresholds: cannot read thresholds file"
    ):
        load_config(cfg)


def test_pack_config_and_command_line_mistakes_are_explained(
    fitted_pack: Path, hum_beep_hum: Path, tmp_path: Path
) -> None:
    def check(rule: str, expected: str) -> None:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(f"sources: [{{name: pump, file: {hum_beep_hum}}}]\nrules:\n  - {rule}\n")
        with pytest.raises(ConfigError, match=expected):
            load_config(cfg)

    check(
        f"{{pack: {fitted_pack}, labels: [dog]}}",
        r"line 3, rules\[0\].labels: 'dog' is not a label of this pack \(class A, class B, noise\)",
    )
    check(
        f"{{pack: {fitted_pack}, labels: [class A], against: [cat]}}",
        r"rules\[0\].against: a rule with a pack scores against the pack's other labels",
    )
    check(
        f"{{pack: {tmp_path / 'gone.pack.json'}, labels: [class A]}}",
        r"rules\[0\].pack: cannot read classifier pack",
    )
    # the pack's calibrated thresholds apply under the rule's own
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(
        f"sources: [{{name: pump, file: {hum_beep_hum}}}]\nrules:\n"
        f"  - {{pack: {fitted_pack}, labels: [class A, noise], thresholds: {{noise: 0.5}}}}\n"
    )
    (rule,) = load_config(cfg).rules
    pack_thresholds = dict(load_pack(fitted_pack).label_thresholds)
    assert dict(rule.label_thresholds) == {"class A": pack_thresholds["class A"], "noise": 0.5}
    assert rule.against == ("class B",)

    code, _, out = _monitor([str(hum_beep_hum), "--pack", str(fitted_pack), "--alert", "dog"])
    assert (
        code == 2
        and "--alert names a label the pack does not score; its labels: class A, class B, noise" in out
    )
    code, _, out = _monitor(["--config", str(cfg), "--pack", str(fitted_pack)])
    assert code == 2 and "name a rule's pack in the file" in out
    doc = json.loads(fitted_pack.read_text())
    doc["text"]["base64"] = doc["directions"]["base64"]  # as if fitted on another model
    other = tmp_path / "other.pack.json"
    other.write_text(json.dumps(doc))
    code, messages, out = _monitor(
        [
            str(hum_beep_hum),
            "--pack",
            str(other),
            "--alert",
            "class A",
            "--fast",
            "--db",
            str(tmp_path / "m.db"),
        ]
    )
    assert code == 1 and messages == [] and "was fitted on" in out and "computes different embeddings" in out


def test_quick_start_with_a_pack(fitted_pack: Path, hum_beep_hum: Path, tmp_path: Path) -> None:
    code, messages, out = _monitor(
        [
            str(hum_beep_hum),
            "--pack",
            str(fitted_pack),
            "--alert",
            "class a",
            "-k",
            "2",
            "-n",
            "2",
            "--fast",
            "--json",
            "--db",
            str(tmp_path / "m.db"),
        ]
    )
    assert code == 0, out
    assert [(m["event"], m["label"]) for m in messages] == [("start", "class A"), ("end", "class A")]
