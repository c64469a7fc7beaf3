"""Pure parts of the server: settings table, sniffing, i18n, WAV chunks, rendering, batching logic."""

from __future__ import annotations

import dataclasses
import re
import struct
import threading

import numpy as np
import pytest

from earmark.audio.sniff import not_audio_kind
from earmark.errors import AudioError, ConfigError
from earmark.server.batching import Admission
from earmark.server.errors import ServerBusy
from earmark.server.i18n import MESSAGES, foreign_script_labels, pick_language, t
from earmark.server.settings import SETTINGS, ServerSettings, is_loopback, parse_setting
from earmark.types import Prediction, Score, Segment, WindowScores
from helpers import ROOT


def test_every_setting_is_in_the_table_and_documented() -> None:
    names = {f.name for f in dataclasses.fields(ServerSettings)}
    assert names == set(SETTINGS)
    docs = (ROOT / "docs" / "server.md").read_text()
    for name, help_text in SETTINGS.items():
        assert help_text.strip(), name
        assert re.search(rf"`{name}`", docs), f"setting {name} is not documented in docs/server.md"


def test_parse_setting_types_and_errors() -> None:
    s = parse_setting(ServerSettings(), "max_queue", "64")
    assert s.max_queue == 64 and isinstance(s.max_queue, int)
    assert parse_setting(s, "max_wait_ms", "2.5").max_wait_ms == 2.5
    with pytest.raises(ConfigError, match="unknown setting 'max_qeue'; expected one of: .*max_queue"):
        parse_setting(s, "max_qeue", "1")
    with pytest.raises(ConfigError, match="must be a whole number"):
        parse_setting(s, "max_queue", "lots")
    with pytest.raises(ConfigError, match="decode_workers must be at least 1"):
        parse_setting(s, "decode_workers", "0")
    with pytest.raises(ConfigError, match="unknown setting 'api_key'"):
        parse_setting(s, "api_key", "x")  # keys never travel on the command line as a setting


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "a PNG image"),
        (b"%PDF-1.7\n%\xe2\xe3", "a PDF document"),
        (b"RIFF\x10\0\0\0WEBPVP8 ", "a WebP image"),
        (b'{"labels": ["a", "b"]}', "text (HTML, XML or JSON)"),
        (b"just some words in a text file\n", "plain text"),
        (b"\x7fELF\x02\x01\x01\0", "a program (ELF)"),
    ],
)
def test_sniff_names_plain_non_audio(head: bytes, kind: str) -> None:
    assert not_audio_kind(head) == kind


@pytest.mark.parametrize(
    "head",
    [
        b"RIFF\x24\0\0\0WAVEfmt ",
        b"ID3\x04\0\0\0\0\0\x00",
        b"\xff\xfb\x90\x64\0\0\0\0",
        b"OggS\0\x02\0\0",
        b"fLaC\0\0\0\x22",
        b"\0\0\0\x20ftypM4A ",
        b"\x1aE\xdf\xa3\x9fB\x86\x81",
    ],
)
def test_sniff_lets_audio_containers_through(head: bytes) -> None:
    assert not_audio_kind(head) is None


def test_languages_have_the_same_keys_and_placeholders() -> None:
    en, zh = MESSAGES["en"], MESSAGES["zh-CN"]
    assert set(en) == set(zh)
    for key in en:
        assert set(re.findall(r"{(\w+)}", en[key])) == set(re.findall(r"{(\w+)}", zh[key])), key
    assert t("busy", "zh-CN", s=3) == "服务器繁忙，请在 3 秒后重试。"
    assert t("busy", "fr", s=3) == "The server is busy; try again in 3 s."


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("en-US,en;q=0.9", "en"),
        (None, "en"),
        ("fr-FR,zh;q=0.5,en;q=0.4", "zh-CN"),
        ("en;q=0.5,zh;q=0.9", "zh-CN"),
        ("de", "en"),
    ],
)
def test_pick_language(header: str | None, lang: str) -> None:
    assert pick_language(header) == lang


def test_foreign_script_labels() -> None:
    labels = ["dog barking", "café ambience", "狗叫", "сирена", "42 beeps!", "警报 alarm"]
    assert foreign_script_labels(labels) == ["狗叫", "сирена", "警报 alarm"]


def _wav(samples: np.ndarray, rate: int, tag: int, bits: int, extensible: bool = False) -> bytes:
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    data = samples.tobytes()
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0)
        fmt += struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_read_wav_chunks_as_browsers_send_them() -> None:
    from earmark.server.ui_live import read_wav

    mono16 = (np.sin(np.arange(4800) / 10) * 20000).astype("<i2")
    rate, x = read_wav(_wav(mono16, 48000, 1, 16))
    assert rate == 48000 and x.shape == (4800, 1) and np.array_equal(x[:, 0], mono16)
    stereo = np.random.default_rng(0).uniform(-1, 1, (2205, 2)).astype("<f4")
    rate, x = read_wav(_wav(stereo, 44100, 3, 32, extensible=True))
    assert rate == 44100 and x.shape == (2205, 2) and np.array_equal(x, stereo)
    pcm24 = np.array([[0x00, 0x00, 0x40], [0x00, 0x00, 0xC0]], np.uint8)  # +0.5 and -0.5 full scale
    _, x = read_wav(_wav(pcm24.reshape(-1), 8000, 1, 24))
    assert x[:, 0].tolist() == [0x40000000, -0x40000000]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"ID3\x04" + b"\0" * 60, "must be a WAV file"),
        (b"RIFF\0\0\0\0WAVEdata\0\0\0\0", "no format header"),
        (b"RIFF\0\0\0\0WAVE", "no audio data"),
    ],
)
def test_read_wav_refuses_anything_else(data: bytes, reason: str) -> None:
    from earmark.server.ui_live import read_wav

    with pytest.raises(AudioError, match=reason):
        read_wav(data)


@pytest.mark.parametrize(
    ("bad", "reason"), [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (3e7, "far outside")]
)
def test_a_live_chunk_with_non_finite_samples_is_refused_not_patched(bad: float, reason: str) -> None:
    # what the page shows for a broken float chunk: the same words as for a broken file
    from earmark.server.ui_live import read_wav

    x = np.zeros(4800, "<f4")
    x[100] = bad
    with pytest.raises(AudioError, match=reason):
        read_wav(_wav(x, 48000, 3, 32))


def _prediction(labels: tuple[str, ...], windows: list[list[float]], threshold: float = 0.7) -> Prediction:
    probs = np.array(windows)
    clip = probs.mean(axis=0)
    order = np.argsort(-clip, kind="stable")
    spans = [(i * 5.0, i * 5.0 + 10.0) for i in range(len(windows))]
    segs = tuple(
        Segment(label=labels[int(np.argmax(w))], start_s=s, end_s=e, score=float(max(w)))
        for (s, e), w in zip(spans, windows, strict=True)
        if max(w) >= threshold
    )
    return Prediction(
        source="a.wav",
        model="m",
        labels=labels,
        threshold=threshold,
        top_k=3,
        sample_rate=48000,
        duration_s=spans[-1][1],
        scores=tuple(Score(label=labels[j], probability=float(clip[j]), cosine=0.1) for j in order),
        windows=tuple(
            WindowScores(start_s=s, end_s=e, probabilities=tuple(w), cosines=tuple(w))
            for (s, e), w in zip(spans, windows, strict=True)
        ),
        timeline=segs,
    )


def test_render_escapes_labels_and_marks_top_and_uncertain() -> None:
    from earmark.server.ui_render import bars_html, summary_html

    p = _prediction(("<b>x</b>", "dog", "狗", "cat"), [[0.4, 0.3, 0.2, 0.1]])
    html = summary_html(p, "en") + bars_html(p, "en")
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert 'data-uncertain="true"' in html and ">uncertain (best guess: &lt;b&gt;x&lt;/b&gt;, 40.0%)<" in html
    assert html.count("em-bar-row em-top") == 3 and html.count("em-bar-row") == 4
    assert "not in the Latin script (狗)" in html
    zh = summary_html(p, "zh-CN")
    assert ">不确定（最可能：&lt;b&gt;x&lt;/b&gt;，40.0%）<" in zh and "部分标签不是拉丁字母（狗）" in zh


def test_render_timeline_lanes_segments_and_exports() -> None:
    import csv
    import io
    import json

    from earmark.server.ui_render import export_csv, export_json, timeline_html

    p = _prediction(("hum", "clicks", "beep"), [[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.05, 0.1, 0.85]])
    html = timeline_html(p, "en")
    assert re.findall(r'class="em-segment" data-label="(\w+)"', html) == ["hum", "clicks", "beep"]
    assert re.findall(r'<tr data-label="(\w+)">', html) == ["hum", "clicks", "beep"]
    rows = list(csv.reader(io.StringIO(export_csv(p))))
    assert rows[0] == ["row", "start_s", "end_s", "answer", "hum", "clicks", "beep"]
    assert [r[0] for r in rows[1:]] == ["clip", "window 1", "window 2", "window 3"]
    assert json.loads(export_json(p))["windows"][1]["probabilities"] == [0.1, 0.85, 0.05]


def test_admission_refuses_beyond_capacity_at_once_and_frees_places() -> None:
    admission = Admission(capacity=2, parallelism=1)
    entered = threading.Barrier(3)
    release = threading.Event()

    def hold() -> None:
        with admission.slot():
            entered.wait()
            release.wait(5)

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for th in threads:
        th.start()
    entered.wait()
    # both holders still hold (release is not set): refusing instead of waiting is the only way out
    with pytest.raises(ServerBusy) as info, admission.slot():
        pass
    assert admission.held == 2 and info.value.retry_after_s >= 1
    release.set()
    for th in threads:
        th.join()
    with admission.slot():
        assert admission.held == 1
    assert admission.held == 0


def test_a_serve_that_fails_during_start_up_leaves_the_collector_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Start-up pauses garbage collection; a start that fails inside the pause must not keep it off."""
    import gc

    from click.testing import CliRunner

    from earmark.cli import cli

    bad = tmp_path / "broken.pack"
    bad.write_text("not a classifier pack")
    assert gc.isenabled()
    r = CliRunner().invoke(cli, ["serve", "--port", "0", "--pack", str(bad), "--no-ui"])
    assert r.exit_code == 1 and "--pack broken" in r.output, r.output  # the user reads why
    assert gc.isenabled(), "a failed start left garbage collection off in this process"
