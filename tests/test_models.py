"""Model provisioning: real loading path, clear errors, import for air-gapped machines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from earmark import models
from earmark.errors import ModelError, UnknownModelError


def test_a_missing_model_offline_says_what_to_run(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UnknownModelError) as info:
        models.resolve("clap-htsat-fused")
    msg = str(info.value)
    assert "'laion/clap-htsat-fused'" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "earmark model pull clap-htsat-fused" in msg
    assert "earmark model import FOLDER --name clap-htsat-fused" in msg
    assert "--model /path/to/folder" in msg
    assert str(Path(os.environ["EARMARK_HOME"]) / "hub") in msg


def test_an_unreachable_hub_is_the_same_clear_error_and_no_fallback(tmp_path) -> None:
    """With downloads allowed but the hub unreachable, classify fails fast and says what to do."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "EARMARK_HOME": str(tmp_path),
    }
    run = subprocess.run(
        [sys.executable, "-m", "earmark", "classify", "x.wav", "-l", "a, b"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 1
    assert "model 'laion/clap-htsat-fused' could not be downloaded" in run.stderr
    assert "Connection refused" in run.stderr
    assert "earmark model pull clap-htsat-fused" in run.stderr
    assert run.stdout == ""


def test_env_var_names_the_default_model(monkeypatch, tiny_model) -> None:
    monkeypatch.setenv("EARMARK_MODEL", tiny_model)
    assert models.resolve() == Path(tiny_model).resolve()


def test_a_folder_that_is_not_a_model_is_refused(tmp_path, tiny_model) -> None:
    broken = tmp_path / "half"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="missing model.safetensors"):
        models.resolve(str(broken))
    with pytest.raises(UnknownModelError, match="does not exist"):
        models.resolve(str(tmp_path / "nowhere"))
    other = tmp_path / "bert"
    shutil.copytree(tiny_model, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ModelError, match="not a CLAP model"):
        models.resolve(str(other))


def test_import_makes_a_copied_folder_load_by_name_offline(tiny_model, tmp_path) -> None:
    name, dest = models.import_model(tiny_model, "clap-htsat-fused")
    assert name == "laion/clap-htsat-fused"
    assert models.resolve("clap-htsat-fused") == dest
    assert models.resolve("laion/clap-htsat-fused") == dest
    rows = {n: p for n, _, p in models.list_models()}
    assert rows["clap-htsat-fused"] == dest and rows["clap-htsat-unfused"] is None
    with pytest.raises(ModelError, match="already imported"):
        models.import_model(tiny_model, "clap-htsat-fused")


def test_an_imported_model_classifies_through_the_normal_path(tiny_model, tmp_path) -> None:
    from earmark import Classifier, synth

    models.import_model(tiny_model, "my-tiny")
    clf = Classifier("my-tiny", threads=1)
    assert clf.model_id == "my-tiny"
    assert clf.classify(synth.make("hum", 2), ["hum", "beep"], input_rate=48_000).label == "hum"


def test_hub_cache_layout_is_found_offline(tiny_model, monkeypatch, tmp_path) -> None:
    """A model already in the Hugging Face cache layout (as `pull` leaves it) resolves offline."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    snap = tmp_path / "hf" / "hub" / "models--laion--clap-htsat-unfused" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model, snap)
    refs = snap.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    assert models.resolve("clap-htsat-unfused") == snap


def test_model_info(tiny_model) -> None:
    info = models.model_info(tiny_model)
    assert info.fused and info.sample_rate == 48_000 and info.window_s == 10
    assert info.projection_dim == 32 and 0 < info.size_bytes < 5_000_000
