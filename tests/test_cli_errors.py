"""Every command's foreseeable failures end in a one-line message, never a traceback.

Each case runs the real ``earmark`` in a subprocess (stdin piped, no terminal), as a
script or a user without a terminal would, and checks the exit code, the message on
stderr and that stderr holds no "Traceback".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, TINY_MODEL, sound_file

pytestmark = pytest.mark.slow  # about 30 subprocesses, some load the tiny model


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int
    says: str
    stdin: str = ""


def _run(args: list[str], home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        EARMARK_HOME=str(home),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        COLUMNS="100",
    )
    env.pop("EARMARK_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "earmark", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        start_new_session=True,  # no controlling terminal: /dev/tty cannot be opened
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-errors")
    not_audio = d / "photo.wav"
    not_audio.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    thresholds = d / "thresholds.json"
    thresholds.write_text(json.dumps({"dog": 0.5, "cat": 0.6}))
    empty = d / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    config = d / "monitor.yaml"
    config.write_text("sources: [\n")
    return {
        "beep": sound_file(d, "beep", 2, ".wav"),
        "not_audio": not_audio,
        "thresholds": thresholds,
        "empty": empty,
        "bad_yaml": config,
        "missing": d / "nope.wav",
        "db": d / "library.db",
    }


def _cases(f: dict[str, Path]) -> list[Case]:
    m = str(TINY_MODEL)
    beep, db = str(f["beep"]), str(f["db"])
    return [
        # classify
        Case(("classify", beep, "-m", m), 2, "no labels given"),
        Case(("classify", beep, "-l", "beep", "-m", m), 1, "need at least 2 labels"),
        Case(
            ("classify", beep, "-l", "beep, hum", "--json", "--csv"), 2, "--json and --csv exclude each other"
        ),
        Case(("classify", str(f["not_audio"]), "-l", "beep, hum", "-m", m), 1, "error: "),
        Case(("classify", str(f["missing"]), "-l", "beep, hum", "-m", m), 1, "error: "),
        Case(("classify", str(f["empty"]), "-l", "beep, hum"), 1, "no audio files found"),
        Case(("classify", beep, "-l", "beep, hum", "-m", str(f["empty"])), 1, "Error: "),
        Case(
            ("classify", beep, "-l", "beep, hum", "-m", m, "--thresholds", str(f["thresholds"])),
            0,
            "matches none of the labels",
        ),
        Case(("classify", beep, "-l", "a, b", "--template", "no placeholder", "-m", m), 1, "{label}"),
        Case(("classify", beep, "-l", "a, b", "--window-s", "0", "-m", m), 1, "Error: "),
        # library
        Case(("tag", str(f["empty"]), "--db", db), 2, "no labels given"),
        Case(("tag", str(f["missing"]), "-l", "a, b", "--db", db), 2, "does not exist"),
        Case(("undo", "999", "--db", db), 1, "Error: "),
        Case(("undo", "--list", "--db", db), 0, "no runs yet"),
        Case(("review", "--db", db), 0, "nothing to review"),
        Case(("search", "glass", "--db", db, "-m", m), 0, ""),
        Case(("similar", str(f["not_audio"]), "--db", db, "-m", m), 1, "Error: "),
        Case(("export", "--db", db, "--format", "xml"), 2, "Invalid value"),
        # monitor and events
        Case(("monitor",), 2, "give a SOURCE"),
        Case(("monitor", "mic", "-l", "beep, hum"), 2, "--alert"),
        Case(("monitor", str(f["missing"]), "-l", "beep, hum", "-a", "beep"), 2, "no such file"),
        Case(("monitor", "-c", str(f["bad_yaml"])), 1, "Error: "),
        Case(("events", "--since", "yesterday-ish", "--db", db), 2, "--since"),
        # evaluation, fitting, calibration
        Case(("eval", str(f["missing"])), 2, "does not exist"),
        Case(("eval", str(f["empty"]), "-m", m), 1, "Error: "),
        Case(("fit", str(f["empty"]), "-o", str(f["empty"] / "x.pack.json"), "-m", m), 1, "Error: "),
        Case(("calibrate", str(f["empty"]), "-m", m), 1, "Error: "),
        # serve
        Case(("serve", "--host", "0.0.0.0", "--port", "0"), 2, "API key"),
        Case(("serve", "--setting", "no_such_setting", "1", "--port", "0"), 1, "no_such_setting"),
        Case(("serve", "--pack", str(f["missing"]), "--port", "0"), 1, "Error: "),
        # models
        Case(("model", "info", "no-such-model-anywhere"), 1, "Error: "),
    ]


def test_no_command_answers_a_foreseeable_failure_with_a_traceback(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cases = _cases(files)
    with ThreadPoolExecutor(3) as pool:  # mostly waiting on imports and model loads
        results = list(pool.map(lambda c: _run(list(c.args), tmp_path, c.stdin), cases))
    wrong = []
    for case, r in zip(cases, results, strict=True):
        shown = f"earmark {' '.join(case.args)} -> exit {r.returncode}\n{r.stderr[-1500:]}"
        if "Traceback" in r.stderr or r.returncode != case.code or case.says not in r.stderr:
            wrong.append(shown)
    assert not wrong, "the user sees a traceback or the wrong message:\n\n" + "\n\n".join(wrong)


def test_monitor_mic_without_portaudio_says_what_to_install(tmp_path: Path) -> None:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pass  # what this test is about: the PortAudio library is missing here
    except ImportError:
        pass
    else:
        pytest.skip("PortAudio is installed here: the microphone would open")
    r = _run(["monitor", "mic", "-l", "beep, hum", "-a", "beep", "-m", str(TINY_MODEL)], tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "unexpected error" not in r.stderr, r.stderr
    assert "PortAudio" in r.stderr or "sounddevice" in r.stderr, r.stderr


def test_review_reads_keys_from_a_pipe(tmp_path: Path, classifier) -> None:  # type: ignore[no-untyped-def]
    from earmark.library import TagOptions, tag_paths
    from earmark.store import Database

    lib = tmp_path / "lib"
    lib.mkdir()
    for kind in ("beep", "hum", "noise"):
        sound_file(lib, kind, 2, ".wav")
    db = Database(tmp_path / "lib.db")
    # an impossible bar: every file goes to the review queue
    list(tag_paths(db, [lib], TagOptions(labels=("beep", "hum", "noise"), min_confidence=1.0), classifier))
    db.close()
    # one key, then the end of the pipe quits
    r = _run(["review", "--db", str(tmp_path / "lib.db"), "--no-play"], tmp_path, stdin="a\n")
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    assert "-> accept as" in r.stdout and "1 accepted, 0 relabelled, 0 skipped" in r.stderr, (
        r.stdout + r.stderr
    )
