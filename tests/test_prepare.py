"""First run: one announced preparation per model and CPU, `earmark model prepare`, a robust `auto`,
and `serve` refusing a port in use before loading anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from earmark.backends import artifacts, select
from earmark.cli import cli
from helpers import ROOT

pytest.importorskip("openvino")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "EARMARK_HOME": str(home), "PYTHONPATH": str(ROOT / "src"), **extra}
    env.pop("EARMARK_BACKEND", None)  # auto
    return env


@pytest.mark.slow
def test_model_prepare_announces_measures_and_is_shown_by_info(tiny_model: str, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["model", "prepare", tiny_model, "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "preparing" in r.output and "for this CPU (once, about" in r.output, r.output
    assert "step 2/4: exporting to ONNX" in r.output and "step 4/4: measuring backends" in r.output
    assert "auto backend at 1 thread:" in r.output
    info = runner.invoke(cli, ["model", "info", tiny_model])
    line = next((x for x in info.output.splitlines() if x.startswith("auto at 1 thread(s)")), "")
    assert "measured" in line and "at load" in line and "rounds kept" in line, info.output
    again = runner.invoke(cli, ["model", "prepare", "--if-needed", tiny_model])
    assert again.exit_code == 0 and "is prepared for this CPU" in again.output, again.output
    assert "step 1/4" not in again.output, "--if-needed prepared a prepared model again"


@pytest.mark.slow
def test_first_auto_use_prepares_once_in_a_child_and_serving_process_holds_no_torch(
    tiny_model: str, tmp_path: Path
) -> None:
    code = (
        "import sys\n"
        "from earmark.backends import get_backend\n"
        f"b = get_backend('auto', model={tiny_model!r}, threads=int(sys.argv[1]))\n"
        "b.embed_audio([__import__('numpy').zeros(48000, 'float32') + 0.1])\n"
        "print(b.name, 'torch' in sys.modules)\n"
    )
    env = _env(tmp_path / "home")
    first = subprocess.run(
        [sys.executable, "-c", code, "1"], capture_output=True, text=True, env=env, timeout=900
    )
    assert first.returncode == 0, first.stderr
    assert "for this CPU (once, about" in first.stderr, f"the first use said nothing: {first.stderr!r}"
    assert "step 4/4: measuring backends" in first.stderr
    name, holds_torch = first.stdout.split()
    assert name in select.EXACT_CANDIDATES
    assert holds_torch == str(name == "torch"), f"{name} was chosen, yet this process imported torch"
    # a new thread count on the same CPU: no second preparation, no export
    second = subprocess.run(
        [sys.executable, "-c", code, "2"], capture_output=True, text=True, env=env, timeout=600
    )
    assert second.returncode == 0, second.stderr
    assert "preparing" not in second.stderr, f"a thread count alone prepared again: {second.stderr!r}"
    assert second.stdout.split()[0] == name


class _Fake:
    """Stands in for a model in the timing loop's own logic (busy rounds, medians)."""

    sample_rate = 16_000
    window_samples = 16_000

    def __init__(self) -> None:
        self.calls = 0

    def embed_audio(self, windows: list[np.ndarray]) -> np.ndarray:
        self.calls += 1
        return np.zeros((len(windows), 4), np.float32)


def test_busy_rounds_are_measured_again_and_kept_busy_figures_are_marked(monkeypatch) -> None:
    # the machine's real state must not decide this test: the calibration loop and steal time
    # are pinned quiet, the load is what each half sets
    monkeypatch.setattr(select, "_calibrate", lambda: 0.01)
    monkeypatch.setattr(select, "_cpu_times", lambda: (0, 0))
    monkeypatch.setattr(select, "_load1", lambda: 0.0)
    quiet, cond = select.measure({"a": _Fake(), "b": _Fake()}, rounds=2, timed=1, extra_rounds=2)
    assert set(quiet) == {"a", "b"} and cond.rounds_kept >= 1 and not cond.busy
    monkeypatch.setattr(select, "_load1", lambda: 1000.0)  # a machine far beyond its cores
    lines: list[str] = []
    fake = _Fake()
    _, busy = select.measure({"a": fake}, rounds=2, timed=1, extra_rounds=2, progress=lines.append)
    assert busy.busy and busy.rounds_kept == 4, "busy rounds were not measured again"
    assert fake.calls == 4 * 2 and all("busy, measured again" in x for x in lines)
    assert busy.load_before == 1000.0


class _Sleeper(_Fake):
    """A model call that takes a fixed time without using the CPU; ``streams`` of them may overlap."""

    def __init__(self, streams: int) -> None:
        super().__init__()
        self.streams = streams
        self.active = self.most = 0
        self._lock = threading.Lock()

    def embed_audio(self, windows: list[np.ndarray]) -> np.ndarray:
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.2)
        with self._lock:
            self.active -= 1
        return super().embed_audio(windows)


def test_a_backend_with_two_streams_is_measured_with_two_calls_in_flight(monkeypatch) -> None:
    monkeypatch.setattr(select, "_calibrate", lambda: 0.01)
    monkeypatch.setattr(select, "_cpu_times", lambda: (0, 0))
    monkeypatch.setattr(select, "_load1", lambda: 0.0)
    one, two = _Sleeper(1), _Sleeper(2)
    ms, _ = select.measure({"one": one, "two": two}, rounds=1, timed=1, extra_rounds=0)
    assert two.most == 2 and one.most == 1, "the stage keeps `streams` calls in flight; measuring must too"
    # the same 0.2 s call, two at once: half the time per window (sleeps overlap whatever the load)
    assert ms["two"] < 0.8 * ms["one"], f"two streams rated like one: {ms}"


def test_remembered_choice_is_per_cpu_and_uses_the_nearest_thread_count() -> None:
    cpu = artifacts.cpu_signature()
    records = {
        "choices": {
            artifacts.machine_signature(1): {"backend": "openvino", "cpu": cpu, "threads": 1},
            artifacts.machine_signature(8): {"backend": "onnx", "cpu": cpu, "threads": 8},
            "other | threads=2 | Linux": {"backend": "torch", "cpu": "other", "threads": 2},
        }
    }
    assert select.remembered_choice(records, 1) == "openvino"
    assert select.remembered_choice(records, 2) == "openvino"
    assert select.remembered_choice(records, 7) == "onnx"
    # a choice made before figures carried their CPU and load is measured again
    old = {"choices": {artifacts.machine_signature(2): {"backend": "torch"}}}
    assert select.remembered_choice(old, 2) is None


@pytest.mark.server
def test_serve_says_the_port_is_in_use_before_loading_the_model(tiny_model: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "earmark", "serve", "--port", str(port), "--model", tiny_model, "--no-ui"],
            capture_output=True,
            text=True,
            env=_env(tmp_path / "home", EARMARK_BACKEND="torch"),
            timeout=300,
        )
    assert run.returncode == 1, run.stderr
    assert f"port {port} is in use" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "Errno" not in run.stderr, run.stderr
    assert not (tmp_path / "home" / "cache").exists(), "the model was loaded before the port was checked"


def test_the_planned_backend_is_the_named_one_or_autos_remembered_choice(tiny_model: str) -> None:
    """Serve fixes its thread count from this before loading: OpenVINO gets every core."""
    from earmark import models
    from earmark.cli.serve_cmd import default_threads

    cores = os.cpu_count() or 1
    assert select.planned_backend("onnx", tiny_model, None, cores) == "onnx"
    assert select.planned_backend("auto", tiny_model, None, cores) is None, "nothing measured yet"
    assert select.planned_backend("auto", "/no/such/model", None, cores) is None  # loading says why
    folder = artifacts.artifact_dir(models.resolve(tiny_model), models.requested(tiny_model))
    folder.mkdir(parents=True)
    choice = {"backend": "openvino", "cpu": artifacts.cpu_signature(), "threads": cores}
    artifacts.update_records(
        folder, lambda r: r["choices"].update({artifacts.machine_signature(cores): choice})
    )
    assert select.planned_backend("auto", tiny_model, None, cores) == "openvino"
    assert default_threads(2, "openvino") == cores
    assert default_threads(2, "onnx") == default_threads(2, None) == max(1, cores - 2)
