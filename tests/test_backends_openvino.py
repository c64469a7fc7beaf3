"""OpenVINO backend: exact f32 against PyTorch fp32, converted once, thread-safe streams, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from earmark import synth
from earmark.backends import artifacts, get_backend
from earmark.backends.clap import ClapBackend
from earmark.backends.openvino import OpenVinoBackend
from earmark.cli import cli
from earmark.errors import ConfigError
from helpers import ROOT

pytest.importorskip("openvino")

TEXTS = ["This is a sound of beep.", "hum", "a clicking sound that goes on and on " * 12, "Ünïcödé chirp ✓"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One EARMARK_HOME for this module, so the tiny model is exported and converted once."""
    return tmp_path_factory.mktemp("openvino-home")


@pytest.fixture(scope="module")
def pair(tiny_model: str, home: Path) -> tuple[ClapBackend, OpenVinoBackend]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EARMARK_HOME", str(home))
        ref = ClapBackend(tiny_model, device="cpu", threads=1)
        return ref, OpenVinoBackend(tiny_model, threads=1, source=ref)


def _clips(n: int) -> list[np.ndarray]:
    kinds = list(synth.SOUNDS)
    return [synth.make(kinds[i % len(kinds)], 1.0 + (i * 1.7) % 9, seed=300 + i) for i in range(n)]


@pytest.mark.slow
def test_f32_audio_and_text_are_exact_against_pytorch_fp32(pair) -> None:
    ref, ov = pair
    clips = _clips(6)
    audio = np.abs(ov.embed_audio(clips) - ref.embed_audio(clips)).max()
    text = np.abs(ov.embed_text(TEXTS) - ref.embed_text(TEXTS)).max()
    assert audio <= 1e-6, f"openvino audio embeddings differ from PyTorch fp32 by {audio:.2g}"
    assert text <= 1e-6, f"openvino text embeddings differ from PyTorch fp32 by {text:.2g}"
    rec = artifacts.read_records(ov.folder)["backends"]["openvino"]
    assert rec["exact"] is True and rec["deviation"]["audio_max_diff"] <= 1e-6


def test_each_window_is_the_same_alone_and_in_a_batch(pair) -> None:
    _, ov = pair
    clips = _clips(5)
    alone = np.concatenate([ov.embed_audio([c]) for c in clips])
    assert np.abs(alone - ov.embed_audio(clips)).max() <= 1e-6


def test_a_cpu_call_takes_one_window_even_when_a_bigger_batch_is_asked_for(
    tiny_model: str, home: Path
) -> None:
    os.environ["EARMARK_HOME"] = str(home)  # restored by the autouse fixture
    ov = get_backend("openvino", model=tiny_model, threads=2, batch_size=8)
    # the stage pads every call to batch_size rows: 8 would make one clip cost 8 windows of work
    assert ov.batch_size == 1, f"a lone clip would be padded to {ov.batch_size} windows per call"


def test_a_lone_clip_gets_one_stream_and_throughput_callers_two(
    tiny_model: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EARMARK_HOME", str(home))
    monkeypatch.delenv("EARMARK_STREAMS", raising=False)
    lone = get_backend("openvino", model=tiny_model, threads=2)
    assert lone.streams == 1, "a lone clip should get every thread on one call (LATENCY mode)"
    many = get_backend("openvino", model=tiny_model, threads=2, throughput=True)
    assert many.streams == 2, "tag/serve/eval keep windows in flight: two streams, one per core"
    assert get_backend("openvino", model=tiny_model, threads=1, throughput=True).streams == 1
    monkeypatch.setenv("EARMARK_STREAMS", "2")
    assert get_backend("openvino", model=tiny_model, threads=2).streams == 2, "$EARMARK_STREAMS is the user's"
    # backends that run one call at a time take the hint without complaint
    assert get_backend("onnx", model=tiny_model, threads=2, throughput=True).streams == 1


def test_two_streams_are_thread_safe_and_give_the_same_embeddings(pair, tiny_model: str, home: Path) -> None:
    _, ov1 = pair
    os.environ["EARMARK_HOME"] = str(home)  # restored by the autouse fixture
    ov2 = OpenVinoBackend(tiny_model, threads=2, streams=2)
    assert ov2.streams == 2 and ov1.streams == 1
    feats = ov2.window_features(_clips(4))
    want = ov1.embed_features(feats)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = ov2.embed_features(feats)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 4
    for got in results.values():
        assert np.abs(got - want).max() <= 1e-6, "concurrent calls on two streams changed an embedding"


def test_converted_once_into_the_model_cache(pair, tiny_model: str, home: Path) -> None:
    _, ov = pair
    xml = ov.folder / "openvino" / "audio.xml"
    assert xml.is_file() and (ov.folder / "openvino" / "text.xml").is_file()
    stamp = xml.stat().st_mtime_ns
    os.environ["EARMARK_HOME"] = str(home)
    again = get_backend("openvino", model=tiny_model, threads=1)
    assert again.folder == ov.folder and xml.stat().st_mtime_ns == stamp, "converted a second time"


def test_text_tower_loads_on_demand_and_is_released(pair, tiny_model: str, home: Path) -> None:
    os.environ["EARMARK_HOME"] = str(home)
    ov = OpenVinoBackend(tiny_model, threads=1)
    assert not ov.text_loaded, "the text tower was loaded before any text was embedded"
    first = ov.embed_text(["beep"])
    assert ov.text_loaded
    assert not ov.release_text(idle_s=3600), "released a text tower used just now"
    assert ov.release_text(idle_s=0) and not ov.text_loaded
    assert np.array_equal(ov.embed_text(["beep"]), first)


def test_bf16_is_asked_for_only_and_its_deviation_is_shown(pair, tiny_model: str, home: Path) -> None:
    os.environ["EARMARK_HOME"] = str(home)
    bf16 = get_backend("openvino-bf16", model=tiny_model, threads=1)
    assert bf16.name == "openvino-bf16"
    r = CliRunner().invoke(cli, ["model", "info", tiny_model, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)["backends"]
    assert info["openvino"]["exact"] is True
    dev = info["openvino-bf16"]["deviation"]
    assert dev["audio_max_diff"] > 0, "bf16 stated as identical to fp32"
    text = CliRunner().invoke(cli, ["model", "info", tiny_model]).output
    line = next(x for x in text.splitlines() if x.startswith("backend openvino-bf16"))
    assert "audio cosine" in line


def test_bad_precision_and_gpu_are_refused(tiny_model: str) -> None:
    with pytest.raises(ConfigError, match="expected one of f32, bf16, f16"):
        OpenVinoBackend(tiny_model, precision="int4")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        get_backend("openvino", model=tiny_model, device="cuda")


def test_openvino_path_runs_without_torch(pair, home: Path, tiny_model: str) -> None:
    """After the one-time conversion an OpenVINO process never imports torch or transformers."""
    code = (
        "import sys, numpy as np\n"
        "from earmark.backends import get_backend\n"
        f"b = get_backend('openvino', model={tiny_model!r}, threads=1)\n"
        "a = b.embed_audio([np.zeros(48000, np.float32) + 0.1])\n"
        "t = b.embed_text(['beep', 'hum'])\n"
        "print(a.shape, t.shape, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    env = {**os.environ, "EARMARK_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["(1,", "32)", "(2,", "32)", "False", "False"]


def _resident_kib(folder: Path) -> int:
    """Resident KiB of this process's mappings of files under ``folder`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's first line
            inside = len(head) == 6 and head[5].startswith(str(folder.resolve()) + "/")
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux's")
def test_the_mapped_model_file_is_given_back_after_each_streams_first_run(
    pair, home: Path, tiny_model: str
) -> None:
    os.environ["EARMARK_HOME"] = str(home)  # restored by the autouse fixture
    ov = OpenVinoBackend(tiny_model, threads=2, streams=2)
    ir = ov.folder / "openvino"
    assert _resident_kib(ir) > 0, "OpenVINO keeps no mapping of the model file: nothing to give back"
    clips = _clips(2)
    first = ov.embed_audio(clips[:1])  # one window: one stream's first run, then the pages go
    assert _resident_kib(ir) == 0, "the model file's pages stayed resident after a stream's first run"
    both = ov.embed_audio(clips)  # the other stream's first run reads some again: given back again
    assert _resident_kib(ir) == 0, "the model file's pages stayed resident after every stream ran"
    # what the plugin reads again comes back from the file: the same embeddings as before
    assert np.array_equal(ov.embed_audio(clips[:1]), first) and np.array_equal(both[:1], first)
    assert ov._unrun is None, "every stream has run: nothing more to give back"


def test_only_read_only_shared_mappings_under_the_folder_are_dropped(tmp_path: Path) -> None:
    from earmark.backends.resident import _read_only_ranges

    folder = tmp_path / "openvino"
    maps = "\n".join(
        [
            f"7f0000000000-7f0000100000 r--s 00000000 08:01 11 {folder}/blobs/1.blob",
            f"7f0000100000-7f0000200000 r--p 00000000 08:01 12 {folder}/audio.bin",  # private: kept
            f"7f0000200000-7f0000300000 rw-s 00000000 08:01 13 {folder}/audio.bin",  # writable: kept
            f"7f0000300000-7f0000400000 r--s 00000000 08:01 14 {folder}-other/audio.bin",  # elsewhere
            "7f0000400000-7f0000500000 rw-p 00000000 00:00 0",  # anonymous
        ]
    )
    assert _read_only_ranges(maps, folder) == [(0x7F0000000000, 0x7F0000100000)]


@pytest.mark.server
def test_serve_gives_openvino_every_core_and_onnx_the_cores_left(pair, home: Path) -> None:
    """The announcement says which backend serves on how many model threads (``--threads`` not given)."""
    from earmark.server.settings import ServerSettings
    from helpers import ServerProcess

    cores = os.cpu_count() or 1
    left = max(1, cores - ServerSettings().decode_workers)
    for backend, want in (("openvino", cores), ("onnx", left)):
        server = ServerProcess("--backend", backend, "--no-ui", home=home, threads=None)
        try:
            said = next(line for line in server.lines if "is serving" in line)
        finally:
            server.stop()
        plural = "s" * (want != 1)
        assert f"({backend}, {want} model thread{plural}) at http://127.0.0.1:" in said, said
