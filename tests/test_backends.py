"""Every backend against PyTorch fp32 and transformers: parity, batch invariance, export cache, auto choice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

from earmark import Classifier, synth
from earmark.backends import Backend, artifacts, get_backend, select
from earmark.backends.clap import ClapBackend, bf16_supported
from earmark.backends.onnx import OnnxBackend
from earmark.cli import cli
from earmark.errors import ConfigError, ModelError
from helpers import ROOT, sound_file

EXACT = ("torch", "onnx")
APPROX = ("torch-bf16", "onnx-int8") if bf16_supported() else ("onnx-int8",)
TEXTS = [
    "This is a sound of beep.",
    "This is a sound of hum.",
    "white noise",
    "a clicking sound that goes on and on " * 12,  # longer than the tiny tokenizer's 64 tokens: truncated
    "Ünïcödé chirp ✓",
]


def _mixed_clips(n: int) -> list[np.ndarray]:
    kinds = list(synth.SOUNDS)
    return [synth.make(kinds[i % len(kinds)], 1.0 + (i * 1.7) % 9, seed=200 + i) for i in range(n)]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One EARMARK_HOME for this module's backends, so the tiny model is exported once."""
    return tmp_path_factory.mktemp("backends-home")


@pytest.fixture(scope="module")
def backends(tiny_model: str, home: Path) -> dict[str, Backend]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EARMARK_HOME", str(home))
        ref = ClapBackend(tiny_model, device="cpu", threads=1)
        out: dict[str, Backend] = {"torch": ref, "onnx": OnnxBackend(tiny_model, threads=1, source=ref)}
        out["onnx-int8"] = OnnxBackend(tiny_model, threads=1, int8=True)
        if bf16_supported():
            out["torch-bf16"] = ClapBackend(tiny_model, device="cpu", threads=1, precision="bf16")
    return out


@pytest.fixture(scope="module")
def reference(tiny_model: str) -> Iterator[tuple[ClapModel, ClapFeatureExtractor]]:
    yield ClapModel.from_pretrained(tiny_model).eval(), ClapFeatureExtractor.from_pretrained(tiny_model)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("name", EXACT + APPROX)
def test_audio_matches_the_single_clip_transformers_reference(backends, reference, name: str) -> None:
    model, fe = reference
    clips = _mixed_clips(5)
    want = []
    for clip in clips:
        feats = fe(clip, sampling_rate=48_000, return_tensors="pt")  # one clip: the fusion path
        with torch.no_grad():
            want.append(model.get_audio_features(**feats).pooler_output[0].numpy())
    got = backends[name].embed_audio(clips)
    if name in EXACT:
        np.testing.assert_allclose(got, np.stack(want), atol=1e-4)
    else:
        assert _cosines(got, np.stack(want)).min() >= 0.999


@pytest.mark.parametrize("name", EXACT + APPROX)
def test_text_matches_pytorch_fp32(backends, name: str) -> None:
    want = backends["torch"].embed_text(TEXTS)
    got = backends[name].embed_text(TEXTS)
    assert got.shape == want.shape and got.dtype == np.float32
    if name in EXACT:
        np.testing.assert_allclose(got, want, atol=1e-4)
    else:
        assert _cosines(got, want).min() >= 0.999


@pytest.mark.parametrize("name", EXACT + APPROX)
def test_each_window_is_the_same_alone_and_in_any_batch(backends, name: str) -> None:
    backend = backends[name]
    clips = _mixed_clips(8)
    alone = np.stack([backend.embed_audio([c])[0] for c in clips])
    for size in (2, 5, 8):
        np.testing.assert_allclose(backend.embed_audio(clips[:size]), alone[:size], atol=1e-5)
    np.testing.assert_allclose(backend.embed_audio(clips[::-1])[::-1], alone, atol=1e-5)


@pytest.mark.parametrize("name", EXACT + APPROX)
def test_each_text_is_the_same_alone_and_in_a_batch(backends, name: str) -> None:
    backend = backends[name]
    together = backend.embed_text(TEXTS)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(backend.embed_text([text])[0], together[i], atol=1e-5)


def test_onnx_tokenizer_gives_the_transformers_token_ids(backends, tiny_model: str) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    onnx = backends["onnx"]
    for text in TEXTS:
        want = tok(text, truncation=True, max_length=64)["input_ids"]
        assert onnx._tokenizer.encode(text).ids == want


def test_bf16_runs_only_where_the_cpu_has_it(tiny_model: str) -> None:
    if bf16_supported():
        assert get_backend("torch-bf16", model=tiny_model, threads=1).name == "torch-bf16"
    else:
        with pytest.raises(ConfigError, match="native bf16"):
            get_backend("torch-bf16", model=tiny_model, threads=1)


def test_onnx_path_runs_without_torch_or_transformers(backends, home: Path, tiny_model: str) -> None:
    """After the one-time export an ONNX process never imports torch: nothing of PyTorch in memory."""
    code = (
        "import sys, numpy as np\n"
        "from earmark.backends import get_backend\n"
        f"b = get_backend('onnx', model={tiny_model!r}, threads=1)\n"
        "a = b.embed_audio([np.zeros(48000, np.float32) + 0.1])\n"
        "t = b.embed_text(['beep', 'hum'])\n"
        "print(a.shape, t.shape, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    env = {**os.environ, "EARMARK_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["(1,", "32)", "(2,", "32)", "False", "False"]


def test_export_is_cached_per_model_and_version(
    backends, home: Path, tiny_model: str, tmp_path: Path
) -> None:
    folder = backends["onnx"].folder
    version = __import__("earmark").__version__
    assert folder.parent == home / "cache" and folder.name.endswith(f"-v{version}-e{artifacts.EXPORT_FORMAT}")
    stamp = (folder / "audio.onnx").stat().st_mtime_ns
    os.environ["EARMARK_HOME"] = str(home)  # restored by the autouse fixture
    again = OnnxBackend(tiny_model, threads=1)
    assert (
        again.folder == folder and (folder / "audio.onnx").stat().st_mtime_ns == stamp
    )  # not exported again
    copy = Path(shutil.copytree(tiny_model, tmp_path / "tiny-copy"))
    assert artifacts.fingerprint(copy) == artifacts.fingerprint(Path(tiny_model))  # same files: same export
    weights = copy / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert artifacts.fingerprint(copy) != artifacts.fingerprint(
        Path(tiny_model)
    )  # replaced weights: new export
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert artifacts.artifact_dir(copy, "x") != artifacts.artifact_dir(Path(tiny_model), "x")


def test_a_corrupt_export_is_a_clear_error(backends, tmp_path: Path, tiny_model: str, monkeypatch) -> None:
    monkeypatch.setenv("EARMARK_HOME", str(tmp_path))
    folder = artifacts.artifact_dir(Path(tiny_model).resolve(), tiny_model)
    shutil.copytree(backends["onnx"].folder, folder)
    (folder / "audio.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="delete that folder"):
        OnnxBackend(tiny_model, threads=1)


def test_onnx_refuses_a_gpu_device(tiny_model: str) -> None:
    with pytest.raises(ConfigError, match="runs on the CPU"):
        get_backend("onnx", model=tiny_model, device="cuda")


def test_unknown_backend_lists_the_choices(tiny_model: str) -> None:
    with pytest.raises(ConfigError, match="expected one of: auto, torch, torch-bf16, onnx, onnx-int8"):
        Classifier(tiny_model, backend="fastest")


@pytest.mark.slow
def test_auto_measures_once_then_remembers(tiny_model: str, monkeypatch) -> None:
    monkeypatch.delenv("EARMARK_BACKEND")
    clf = Classifier(tiny_model, threads=1)  # no backend named: auto (prepared in a child process)
    chosen = clf.backend.name
    assert chosen in select.EXACT_CANDIDATES, f"auto chose {chosen}, which is not exact"
    folder = artifacts.artifact_dir(Path(tiny_model).resolve(), tiny_model)
    records = artifacts.read_records(folder)
    choice = records["choices"][artifacts.machine_signature(1)]
    assert choice["backend"] == chosen and choice["cpu"] == artifacts.cpu_signature()
    assert choice["conditions"]["rounds_kept"] >= 1 and "UTC" in choice["conditions"]["measured_at"]
    measured = records["backends"]
    assert all(measured[n]["exact"] for n in select.EXACT_CANDIDATES)
    sig = artifacts.machine_signature(1)
    assert all(sig in measured[n]["ms_per_window"] for n in select.EXACT_CANDIDATES)

    def no_second_measurement(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("auto measured again")

    monkeypatch.setattr(select, "choose", no_second_measurement)
    assert get_backend("auto", model=tiny_model, threads=1).name == chosen
    # another thread count on the same CPU: the nearest measured choice, no new preparation
    assert get_backend("auto", model=tiny_model, threads=3).name == chosen
    beep = clf.classify(synth.make("beep", 3, seed=1), ["beep", "hum", "noise"], input_rate=48_000)
    assert beep.label == "beep"


def _dev(cos: float, diff: float) -> artifacts.Deviation:
    return artifacts.Deviation(
        audio_cosine_min=cos, audio_max_diff=diff, text_cosine_min=cos, text_max_diff=diff
    )


def test_pick_takes_exact_backends_and_switches_only_on_a_10_percent_margin() -> None:
    exact, near = _dev(1.0, 1e-6), _dev(0.99995, 1e-3)
    assert select.pick({"torch": 100, "onnx": 60}, {"torch": exact, "onnx": exact}) == "onnx"
    # within 10 %: the lightest exact candidate stays (ONNX Runtime memory-maps its weights, OpenVINO
    # copies them, PyTorch adds itself)
    assert select.pick({"torch": 95, "onnx": 100}, {"torch": exact, "onnx": exact}) == "onnx"
    three = {n: exact for n in ("torch", "onnx", "openvino")}
    assert select.pick({"torch": 95, "onnx": 100, "openvino": 96}, three) == "onnx", (
        "a server would hold ~120 MiB more for a 4 % faster OpenVINO"
    )
    assert select.pick({"torch": 100, "onnx": 100, "openvino": 85}, three) == "openvino", (
        "OpenVINO 15 % faster than ONNX Runtime was not chosen"
    )
    assert select.pick({"torch": 95, "openvino": 100}, {"torch": exact, "openvino": exact}) == "openvino"
    # a remembered choice stays unless another is at least 10 % faster
    assert (
        select.pick({"torch": 100, "onnx": 95}, {"torch": exact, "onnx": exact}, incumbent="torch") == "torch"
    )
    assert (
        select.pick({"torch": 100, "onnx": 90}, {"torch": exact, "onnx": exact}, incumbent="torch") == "onnx"
    )
    # approximate backends only when that precision is asked for
    devs = {"onnx": exact, "openvino-bf16": near}
    assert select.pick({"onnx": 60, "openvino-bf16": 20}, devs) == "onnx"
    assert select.pick({"onnx": 60, "openvino-bf16": 20}, devs, precision="bf16") == "openvino-bf16"


def test_model_info_states_each_measured_deviation(
    backends, home: Path, tiny_model: str, monkeypatch
) -> None:
    monkeypatch.setenv("EARMARK_HOME", str(home))
    runner = CliRunner()
    r = runner.invoke(cli, ["model", "info", tiny_model, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    int8 = info["backends"]["onnx-int8"]
    assert int8["exact"] is False and 0.999 <= int8["deviation"]["audio_cosine_min"] < 1.0
    assert int8["deviation"]["audio_max_diff"] > 1e-4
    assert info["backends"]["onnx"]["exact"] is True
    text = runner.invoke(cli, ["model", "info", tiny_model]).output
    line = next(x for x in text.splitlines() if x.startswith("backend onnx-int8"))
    assert "approx" in line and "audio cosine 0.99" in line


def test_model_info_without_measurements_says_how(tiny_model: str) -> None:
    r = CliRunner().invoke(cli, ["model", "info", tiny_model])
    assert r.exit_code == 0 and "not measured yet (earmark model info NAME --measure)" in r.output


@pytest.mark.parametrize("how", ["option", "env"])
def test_backend_option_and_env_reach_the_classifier(
    backends, tiny_model: str, tmp_path: Path, monkeypatch, how: str
) -> None:
    # a copy of the module's export without its records: the onnx backend records its deviation on load
    folder = artifacts.artifact_dir(Path(tiny_model).resolve(), tiny_model)
    shutil.copytree(backends["onnx"].folder, folder, ignore=shutil.ignore_patterns("records.json", ".lock"))
    f = sound_file(tmp_path, "beep", 2, ".mp3")
    args = ["classify", str(f), "-l", "beep, hum", "-m", tiny_model, "--json"]
    if how == "option":
        args += ["--backend", "onnx"]
    else:
        monkeypatch.setenv("EARMARK_BACKEND", "onnx")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.splitlines()[-1])["top"]["label"] == "beep"
    assert list(artifacts.read_records(folder)["backends"]) == ["onnx"]  # the onnx backend ran, nothing else


def test_torch_backend_makes_no_export(tiny_model: str, tmp_path: Path) -> None:
    f = sound_file(tmp_path, "hum", 2, ".wav")
    r = CliRunner().invoke(
        cli, ["classify", str(f), "-l", "beep, hum", "-m", tiny_model, "--backend", "torch"]
    )
    assert r.exit_code == 0, r.output
    # the label cache (cache/labels.sqlite) may be there; a model export folder may not
    cache = Path(os.environ["EARMARK_HOME"]) / "cache"
    exports = [p.name for p in cache.iterdir() if p.is_dir()] if cache.exists() else []
    assert not exports, f"--backend torch exported the model: {exports}"


def test_bad_backend_option_names_the_choices(tiny_model: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["classify", "x.wav", "-l", "a, b", "-m", tiny_model, "--backend", "tpu"])
    assert r.exit_code == 2 and "auto" in r.output and "onnx-int8" in r.output
