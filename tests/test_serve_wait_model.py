"""`earmark serve --wait-for-model` (what the container image runs): without the model it listens anyway,
/readyz says what is missing, and once the model is there the same port serves it. `earmark model prepare`
does the first start's export and measurement ahead of time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from helpers import TINY_MODEL, earmark_env
from monitor_support import free_port

pytestmark = pytest.mark.server

HANG_GUARD_S = 240  # not a speed target: a model load on a machine at load 20


def _env(home: Path) -> dict[str, str]:
    return earmark_env(home)


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as ex:
        return ex.code, json.loads(ex.read() or b"null")


def _poll(url: str, want: int, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        assert proc.poll() is None, f"earmark serve exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            status, body = _get(url)
            if status == want:
                return body
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered {want}:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def test_serve_waits_for_a_missing_model_then_serves_it(tmp_path: Path) -> None:
    model = tmp_path / "models" / "clap"  # mounted later: not there yet
    port, log = free_port(), tmp_path / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "earmark",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--threads",
        "1",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**_env(tmp_path / "home"), "EARMARK_WAIT_FOR_MODEL": "1"},
        )
    try:
        base = f"http://127.0.0.1:{port}"
        body = _poll(f"{base}/readyz", 503, proc, log)
        assert body["status"] == "no model" and str(model) in body["waiting_for"], (
            f"/readyz does not say which model is missing: {body}"
        )
        assert _get(f"{base}/livez") == (200, {"status": "ok"}), "the waiting server is not alive on /livez"
        status, body = _get(f"{base}/api/v1/packs")
        assert status == 503 and "does not exist" in body["waiting_for"], (
            f"the API without a model said {status} {body}"
        )
        assert "has no model yet" in log.read_text(), f"the log does not say why: {log.read_text()[-2000:]}"

        shutil.copytree(TINY_MODEL, model)  # e.g. `earmark model pull` run in the container
        body = _poll(f"{base}/readyz", 200, proc, log)
        assert body["status"] == "ready", f"after the model came, /readyz said {body}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0, f"earmark serve did not stop cleanly on SIGTERM:\n{log.read_text()[-2000:]}"


def test_serve_without_the_flag_still_exits_at_once(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "earmark",
            "serve",
            "--model",
            str(tmp_path / "nothing"),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env=_env(tmp_path / "home"),
        timeout=HANG_GUARD_S,
    )
    assert proc.returncode != 0 and "does not exist" in proc.stderr, f"serve said: {proc.stderr[-2000:]}"


def test_waiting_server_stops_on_sigterm(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "earmark", "serve", "--model", str(tmp_path / "none"), "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--wait-for-model"], stdout=out, stderr=subprocess.STDOUT, env=_env(tmp_path / "home")
        )
    try:
        _poll(f"http://127.0.0.1:{port}/readyz", 503, proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0, (
        f"the waiting server exited {proc.returncode} on SIGTERM:\n{log.read_text()[-2000:]}"
    )


def test_model_prepare_exports_and_remembers_the_backend(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "earmark", "model", "prepare", str(TINY_MODEL), "--threads", "1"],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 0, f"earmark model prepare failed: {proc.stderr[-2000:]}"
    assert "auto backend" in proc.stdout, f"prepare did not say what it chose: {proc.stdout}"
    (folder,) = [p.parent for p in (home / "cache").rglob("records.json")]
    records = json.loads((folder / "records.json").read_text())
    assert any("threads=1" in sig for sig in records["choices"]), f"no backend choice remembered: {records}"
    assert (folder / "reference.npz").is_file(), "the fp32 reference embeddings were not kept"
