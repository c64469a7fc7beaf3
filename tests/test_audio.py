"""Decoding: every format, rate and channel layout earmark promises, and every bad input it refuses.

Fixtures are real files encoded by ffmpeg once per session; nothing is mocked.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from earmark import audio
from earmark.audio import AudioLimits, AudioWarning
from earmark.errors import AudioError
from earmark.stage.windows import iter_windows, window_spans
from helpers import encode

RATE = 48_000
AMP = 0.5
TONE_RMS = AMP / np.sqrt(2)

# name -> (file name, ffmpeg codec args, codec as FFmpeg reports it, max sample error vs the source or None if lossy)
FORMATS: dict[str, tuple[str, list[str], str, float | None]] = {
    "wav-u8": ("u8.wav", ["-c:a", "pcm_u8"], "pcm_u8", 1 / 100),
    "wav-s16": ("s16.wav", ["-c:a", "pcm_s16le"], "pcm_s16le", 1e-4),
    "wav-s24": ("s24.wav", ["-c:a", "pcm_s24le"], "pcm_s24le", 1e-6),
    "wav-s32": ("s32.wav", ["-c:a", "pcm_s32le"], "pcm_s32le", 1e-6),
    "wav-f32": ("f32.wav", ["-c:a", "pcm_f32le"], "pcm_f32le", 1e-7),
    "wav-adpcm-ima": ("ima.wav", ["-c:a", "adpcm_ima_wav"], "adpcm_ima_wav", None),
    "wav-adpcm-ms": ("ms.wav", ["-c:a", "adpcm_ms"], "adpcm_ms", None),
    "mp3": ("a.mp3", ["-c:a", "libmp3lame", "-b:a", "128k"], "mp3float", None),
    "ogg-vorbis": ("a.ogg", ["-c:a", "libvorbis"], "vorbis", None),
    "opus": ("a.opus", ["-c:a", "libopus", "-b:a", "96k"], "opus", None),
    "flac": ("a.flac", ["-c:a", "flac"], "flac", 1e-4),
    "m4a-aac": ("a.m4a", ["-c:a", "aac", "-b:a", "128k"], "aac", None),
    "aiff": ("a.aiff", ["-c:a", "pcm_s16be"], "pcm_s16be", 1e-4),
}
RATES = [8_000, 11_025, 16_000, 22_050, 44_100, 96_000, 192_000]
# (extension, codec args, channel counts): every layout from mono to 7.1 in the codecs that carry them
LAYOUTS = [
    (".wav", ["-c:a", "pcm_s16le"], [1, 2, 3, 4, 5, 6, 7, 8]),
    (".flac", ["-c:a", "flac"], [2, 6, 8]),
    (".opus", ["-c:a", "libopus", "-b:a", "256k"], [2, 6, 8]),
    (".m4a", ["-c:a", "aac", "-b:a", "256k"], [2, 6]),
    (".ogg", ["-c:a", "libvorbis"], [2, 6]),
    (".mp3", ["-c:a", "libmp3lame", "-b:a", "192k"], [2]),
]


def tone(seconds: float = 1.0, rate: int = RATE, hz: float = 1000.0) -> np.ndarray:
    return (AMP * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)])


def level(x: np.ndarray) -> float:
    """RMS away from the edges (codec fade-in/out)."""
    return float(np.sqrt(np.mean(x[RATE // 10 : -RATE // 10] ** 2)))


def encode_channels(
    frames: np.ndarray, path: Path, *, rate: int = RATE, args: list[str] | None = None
) -> Path:
    """Encode (samples, channels) float32 exactly as given, channel by channel (no ffmpeg upmix)."""
    channels = frames.shape[1]
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "f32le",
        "-ar",
        str(rate),
        "-ac",
        str(channels),
    ]
    cmd += ["-i", "-", *(args or ["-c:a", "pcm_f32le"]), str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames, dtype=np.float32).tobytes(), check=True)
    return path


def wav_bytes(pcm: bytes, *, rate: int = RATE, channels: int = 1, data_size: int | None = None) -> bytes:
    """A canonical 44-byte 16-bit PCM WAV header (with any data size it should claim) + data."""
    size = len(pcm) if data_size is None else data_size
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    riff = struct.pack("<I", min(0xFFFFFFFF, 36 + size))
    return b"RIFF" + riff + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", size) + pcm


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8)))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fixture file, encoded once for the session."""
    d = tmp_path_factory.mktemp("audio-fixtures")
    out: dict[str, Path] = {}
    for key, (fname, args, _, _) in FORMATS.items():
        out[key] = encode(tone(), d / fname, extra=args)
    for rate in RATES:
        out[f"rate-{rate}"] = encode(tone(1.0, rate), d / f"r{rate}.flac", rate=rate, extra=["-c:a", "flac"])
    mono = tone()
    for ext, args, counts in LAYOUTS:
        out[f"mono{ext}"] = encode_channels(mono[:, None], d / f"mono{ext}", args=args)
        for n in counts:
            path = d / f"ch{n}{ext}"
            out[f"ch{n}{ext}"] = encode_channels(np.repeat(mono[:, None], n, axis=1), path, args=args)
    out["long-chirp.wav"] = encode(tone(6.0, hz=440), d / "long.wav")
    out["twenty-s.wav"] = encode(tone(20.0, 16_000), d / "twenty.wav", rate=16_000)
    return out


@pytest.mark.parametrize("key", list(FORMATS))
def test_every_format_decodes_to_the_tone(files: dict[str, Path], key: str) -> None:
    _, _, codec, max_error = FORMATS[key]
    assert audio.describe(files[key]).codec == codec  # the fixture really is that format
    x = audio.decode(files[key], sample_rate=RATE)
    assert x.dtype == np.float32 and x.ndim == 1
    assert RATE - 256 <= x.size <= RATE + 2048  # codec priming, end trimming, ADPCM block padding
    assert peak_hz(x) == pytest.approx(1000, abs=2)
    assert level(x) == pytest.approx(TONE_RMS, rel=0.08)
    if max_error is not None:  # lossless: the very samples that went in
        assert x.size == RATE
        assert np.abs(x - tone()).max() <= max_error


@pytest.mark.parametrize("rate", RATES)
def test_every_rate_resamples_to_48k(files: dict[str, Path], rate: int) -> None:
    x = audio.decode(files[f"rate-{rate}"], sample_rate=RATE)
    assert abs(x.size - RATE) <= 1  # 1 s in, 1 s out
    assert peak_hz(x) == pytest.approx(1000, abs=1.5)
    assert level(x) == pytest.approx(TONE_RMS, rel=0.01)
    # an array at the same rate takes the same downmix and resampler
    same = audio.decode(tone(1.0, rate), sample_rate=RATE, input_rate=rate)
    np.testing.assert_allclose(same, x, atol=1e-4)


@pytest.mark.parametrize("rate", [44_100, 22_050, 96_000])
def test_resampler_keeps_frequency_and_length(rate: int) -> None:
    x = audio.decode(tone(2.5, rate), sample_rate=RATE, input_rate=rate)
    assert x.size == round(2.5 * RATE)
    assert peak_hz(x) == pytest.approx(1000, abs=0.5)
    x16 = audio.decode(tone(2.5, rate), sample_rate=16_000, input_rate=rate)
    assert x16.size == 40_000 and peak_hz(x16, 16_000) == pytest.approx(1000, abs=0.5)


@pytest.mark.parametrize(
    "key", [f"ch{n}{ext}" for ext, _, counts in LAYOUTS for n in counts], ids=lambda k: k.replace("ch", "")
)
def test_every_layout_downmixes_at_the_mono_level(files: dict[str, Path], key: str) -> None:
    n, ext = int(key[2]), key[3:]
    assert audio.describe(files[key]).channels == n
    x = audio.decode(files[key], sample_rate=RATE)
    mono = audio.decode(files[f"mono{ext}"], sample_rate=RATE)  # the same codec, one channel
    assert x.size == mono.size
    assert peak_hz(x) == pytest.approx(1000, abs=2)
    # identical channels average to the mono signal itself (FFmpeg's -ac 1 would add 3 dB or more).
    # AAC and Vorbis low-pass the LFE channel of 5.1, so there the mean of six is 5/6 of the tone.
    expected = 5 / 6 if n == 6 and ext in (".m4a", ".ogg") else 1.0
    assert level(x) / level(mono) == pytest.approx(expected, abs=0.005)


def test_stereo_with_identical_channels_has_the_level_of_mono(files: dict[str, Path]) -> None:
    mono = audio.decode(files["wav-s16"], sample_rate=RATE)
    stereo = audio.decode(files["ch2.wav"], sample_rate=RATE)
    np.testing.assert_allclose(stereo, mono, atol=1e-4)


def test_downmix_is_the_mean_of_all_channels(tmp_path: Path) -> None:
    x = tone()
    silent = np.zeros_like(x)
    stereo = encode_channels(np.stack([x, silent], axis=1), tmp_path / "left-only.wav")
    np.testing.assert_allclose(audio.decode(stereo, sample_rate=RATE), x / 2, atol=1e-6)
    # 5.1 with the signal in the LFE channel only: 1/6 of it (LFE is averaged like the rest)
    six = np.stack([silent, silent, silent, x, silent, silent], axis=1)
    np.testing.assert_allclose(
        audio.decode(encode_channels(six, tmp_path / "lfe.wav"), sample_rate=RATE), x / 6, atol=1e-6
    )


# ---------------------------------------------------------------- arrays, file objects, streams


def test_arrays_need_their_rate_and_are_read_like_files() -> None:
    x = tone()
    with pytest.raises(AudioError, match=r"^<array \(48000,\)>: an array needs its sample rate"):
        audio.decode(x, sample_rate=RATE)
    as_int16 = (x * 32767).astype(np.int16)
    np.testing.assert_allclose(audio.decode(as_int16, sample_rate=RATE, input_rate=RATE), x, atol=1e-4)
    channels_first = np.stack([x, x])  # (2, samples): the shorter axis is channels
    np.testing.assert_allclose(audio.decode(channels_first, sample_rate=RATE, input_rate=RATE), x, atol=1e-7)
    bad = x.copy()
    bad[10] = np.nan
    with pytest.raises(AudioError, match="contains NaN or infinite samples"):
        audio.decode(bad, sample_rate=RATE, input_rate=RATE, name="clip")
    with pytest.raises(AudioError, match="^clip: sample rate 4000 Hz is outside"):
        audio.decode(x, sample_rate=RATE, input_rate=4000, name="clip")


def test_file_objects_seekable_or_not(files: dict[str, Path]) -> None:
    data = files["ogg-vorbis"].read_bytes()
    expected = audio.decode(files["ogg-vorbis"], sample_rate=RATE)
    np.testing.assert_array_equal(audio.decode(io.BytesIO(data), sample_rate=RATE), expected)
    np.testing.assert_array_equal(audio.decode(data, sample_rate=RATE), expected)
    r, w = os.pipe()
    with open(r, "rb") as reader:
        threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True).start()
        np.testing.assert_array_equal(audio.decode(reader, sample_rate=RATE), expected)


def test_a_stream_yields_audio_before_its_end_arrives(files: dict[str, Path]) -> None:
    """A live stream: chunks come out while the writer still holds back the second half.

    (FFmpeg first reads a few seconds ahead to analyse the stream; 10 s is plenty.)
    """
    data = files["twenty-s.wav"].read_bytes()
    first_chunk_seen = threading.Event()
    r, w = os.pipe()

    def writer() -> None:
        with open(w, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            if first_chunk_seen.wait(15):  # otherwise end the stream at 10 s: the test fails on the total
                f.write(data[len(data) // 2 :])

    threading.Thread(target=writer, daemon=True).start()
    total = 0
    with open(r, "rb") as reader:
        for chunk in audio.stream(reader, sample_rate=RATE, name="live"):
            if not first_chunk_seen.is_set():
                assert total == 0 and chunk.size == RATE
                first_chunk_seen.set()
            total += chunk.size
    assert total == 20 * RATE


@pytest.mark.slow
def test_thirty_minutes_stream_in_bounded_chunks_and_memory(tmp_path: Path) -> None:
    one = encode(tone(1.0, 8000), tmp_path / "one.wav", rate=8000)
    long = tmp_path / "thirty-minutes.wav"
    loop = ["ffmpeg", "-nostdin", "-loglevel", "error", "-stream_loop", "1799", "-i", str(one), "-c", "copy"]
    subprocess.run([*loop, str(long)], check=True)
    # in a fresh process, so peak RSS measures this decode alone (all of it at 48 kHz would be 346 MB)
    script = f"""
import resource, sys
from earmark import audio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sizes = [c.size for c in audio.stream({str(long)!r}, sample_rate=48000, chunk_s=0.5)]
grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(len(sizes), sum(sizes), max(sizes), sizes[-1], grew_mb)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    n_chunks, total, biggest, last, grew_mb = out.stdout.split()
    assert int(total) == 1800 * RATE
    assert int(biggest) == RATE // 2 and int(n_chunks) == 3600 and int(last) == RATE // 2
    assert float(grew_mb) < 40, f"streaming 30 minutes grew RSS by {grew_mb} MB"


def test_windows_from_a_stream_match_windows_of_the_whole() -> None:
    x = np.arange(23 * 1000, dtype=np.float32)
    chunks = (x[i : i + 700] for i in range(0, x.size, 700))
    got = list(iter_windows(chunks, window=10_000, hop=5_000))
    spans = window_spans(x.size, 10_000, 5_000)
    assert [s for s, _ in got] == [s for s, _ in spans] == [0, 5000, 10000, 13000]
    for (start, w), (a, b) in zip(got, spans, strict=True):
        np.testing.assert_array_equal(w, x[a:b])
        assert start == a


# ---------------------------------------------------------------- bad input: refused with a reason


def _bad_inputs(files: dict[str, Path]) -> dict[str, tuple[bytes, str]]:
    wav = files["wav-s16"].read_bytes()
    mp3 = bytearray(files["mp3"].read_bytes())
    for i in range(len(mp3) - 2):  # every frame header gets the forbidden bitrate index 15
        if mp3[i] == 0xFF and mp3[i + 1] in (0xFB, 0xF3):
            mp3[i + 2] |= 0xF0
    return {
        "empty.wav": (b"", "the file is empty (0 bytes)"),
        "header-only.wav": (wav_bytes(b"", data_size=RATE * 2), "decodes to no audio samples"),
        "cut-header.wav": (wav[:20], "is not audio that FFmpeg can read (unknown format or damaged data)"),
        "image.wav": (png_bytes(), "has no audio stream (not an audio file)"),
        "notes.mp3": (b"shopping list: eggs, milk, bread\n" * 40, "is not audio that FFmpeg can read"),
        "noise.wav": (np.random.default_rng(0).bytes(20_000), "is not audio that FFmpeg can read"),
        "all-frames-bogus.mp3": (bytes(mp3), "is not audio that FFmpeg can read"),
        "cut.m4a": (files["m4a-aac"].read_bytes()[:-3000], "is not audio that FFmpeg can read"),
    }


BAD = [
    "empty.wav",
    "header-only.wav",
    "cut-header.wav",
    "image.wav",
    "notes.mp3",
    "noise.wav",
    "all-frames-bogus.mp3",
    "cut.m4a",
]


@pytest.mark.parametrize("bad", BAD)
def test_bad_files_raise_an_error_naming_file_and_reason(
    files: dict[str, Path], tmp_path: Path, bad: str
) -> None:
    data, reason = _bad_inputs(files)[bad]
    path = tmp_path / bad
    path.write_bytes(data)
    with pytest.raises(AudioError) as info:
        audio.decode(path, sample_rate=RATE)
    assert str(info.value).startswith(f"{path}: {reason}")
    assert info.value.source == str(path)
    with pytest.raises(AudioError) as info:  # the same bytes in memory
        audio.decode(data, sample_rate=RATE, name=bad)
    assert str(info.value).startswith(f"{bad}: {reason}")


@pytest.mark.parametrize("key", ["wav-s16", "aiff", "flac", "mp3", "ogg-vorbis", "opus"])
def test_a_file_cut_midway_decodes_what_is_there_and_warns(
    files: dict[str, Path], tmp_path: Path, key: str
) -> None:
    whole = encode(tone(6.0), tmp_path / f"whole{files[key].suffix}", extra=FORMATS[key][1]).read_bytes()
    cut = tmp_path / f"cut{files[key].suffix}"
    cut.write_bytes(whole[: int(len(whole) * 0.6)])
    with pytest.warns(AudioWarning, match=rf"^{cut}: .*truncated\?.*; kept \d+\.\d s$"):
        x = audio.decode(cut, sample_rate=RATE)
    assert 1.5 * RATE < x.size < 4.0 * RATE  # about 60 % of 6 s (less for Vorbis: its headers are big)
    assert peak_hz(x) == pytest.approx(1000, abs=2)


def test_a_wav_header_claiming_4_gib_decodes_what_is_really_there() -> None:
    """Documented: the header is not trusted for limits; the real 1 s decodes, with a warning."""
    pcm = (tone() * 32767).astype("<i2").tobytes()
    lying = wav_bytes(pcm, data_size=0xFFFFFF00)
    limits = AudioLimits(max_duration_s=5, max_bytes=200_000)  # far below what the header claims
    with pytest.warns(
        AudioWarning, match=r"^liar.wav: the file ends after 1.0 s but its header says 44739.2 s"
    ):
        x = audio.decode(lying, sample_rate=RATE, limits=limits, name="liar.wav")
    np.testing.assert_allclose(x, tone(), atol=1e-4)
    with warnings.catch_warnings():  # 0xFFFFFFFF is a streaming writer's "unknown": no warning
        warnings.simplefilter("error")
        assert audio.decode(wav_bytes(pcm, data_size=0xFFFFFFFF), sample_rate=RATE).size == RATE


def test_an_mp3_with_one_bogus_frame_header_skips_it_and_warns(files: dict[str, Path]) -> None:
    data = bytearray(encode(tone(3.0), files["mp3"].with_name("bogus-src.mp3")).read_bytes())
    sync = data.index(b"\xff\xfb", len(data) // 2)
    data[sync + 1 : sync + 4] = b"\x00\x00\x00"  # a frame header in the middle turned to garbage
    with pytest.warns(AudioWarning, match=r"^bogus.mp3: \d+ corrupt packet\(s\) skipped; kept 2\.9 s$"):
        x = audio.decode(bytes(data), sample_rate=RATE, name="bogus.mp3")
    assert 3 * RATE - 3 * 1152 <= x.size < 3 * RATE


def test_limits_are_errors_that_name_the_file(files: dict[str, Path], tmp_path: Path) -> None:
    low = encode(tone(1.0, 4000), tmp_path / "low.wav", rate=4000)
    many = encode_channels(
        np.repeat(tone()[:, None], 12, axis=1), tmp_path / "twelve.wav", args=["-c:a", "pcm_s16le"]
    )
    big = files["wav-s16"]  # 96,0xx bytes
    cases = [
        (low, AudioLimits(), "sample rate 4000 Hz is outside the supported 8000-192000 Hz"),
        (many, AudioLimits(), "has 12 channels; at most 8 are supported"),
        (big, AudioLimits(max_bytes=50_000), f"is {big.stat().st_size:,} bytes, over the 50,000 bytes limit"),
        (big, AudioLimits(max_duration_s=0.5), "is longer than the 0.5 s limit"),
    ]
    for path, limits, reason in cases:
        with pytest.raises(AudioError) as info:
            audio.decode(path, sample_rate=RATE, limits=limits)
        assert str(info.value) == f"{path}: {reason}"
    # limits are parameters, not hard-coded: 12 channels decode when allowed, at the mono level
    assert level(audio.decode(many, sample_rate=RATE, limits=AudioLimits(max_channels=12))) == pytest.approx(
        TONE_RMS, rel=1e-3
    )


def test_size_limit_holds_for_bytes_and_unseekable_streams(files: dict[str, Path]) -> None:
    data = files["wav-s16"].read_bytes()
    small = AudioLimits(max_bytes=10_000)
    with pytest.raises(
        AudioError, match=rf"^<{len(data)} bytes>: is {len(data):,} bytes, over the 10,000 bytes"
    ):
        audio.decode(data, sample_rate=RATE, limits=small)
    r, w = os.pipe()
    threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True).start()
    with open(r, "rb") as reader, pytest.raises(AudioError, match="over the 10,000 bytes limit"):
        audio.decode(reader, sample_rate=RATE, limits=small, name="upload")


def test_duration_limit_on_a_stream_stops_it_midway(files: dict[str, Path]) -> None:
    got = []
    with pytest.raises(AudioError, match="is longer than the 2.5 s limit"):
        for chunk in audio.stream(
            files["long-chirp.wav"], sample_rate=RATE, limits=AudioLimits(max_duration_s=2.5)
        ):
            got.append(chunk.size)
    assert got == [RATE, RATE]  # what came before the limit was delivered


def test_other_refusals(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"missing.wav: no such file$"):
        audio.decode(tmp_path / "missing.wav", sample_rate=RATE)
    with pytest.raises(AudioError, match=r": is a folder, not an audio file$"):
        audio.decode(tmp_path, sample_rate=RATE)
    with pytest.raises(AudioError, match="input_rate is only for arrays"):
        audio.decode(files["flac"], sample_rate=RATE, input_rate=RATE)
    with pytest.raises(ValueError, match="min_rate_hz"):
        AudioLimits(min_rate_hz=0)


def test_a_file_name_that_looks_like_an_ffmpeg_protocol_is_just_a_file(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("pipe:0.wav").write_bytes(files["wav-s16"].read_bytes())
    np.testing.assert_array_equal(
        audio.decode("pipe:0.wav", sample_rate=RATE), audio.decode(files["wav-s16"], sample_rate=RATE)
    )


# ---------------------------------------------------------------- the CLI reports it in one line


def test_cli_reports_a_corrupt_file_in_one_line_and_classifies_the_rest(
    tiny_model: str, tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from earmark import synth
    from earmark.cli import cli

    good = encode(synth.make("beep", 3.0), tmp_path / "beep.mp3")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(png_bytes())
    result = CliRunner().invoke(
        cli, ["classify", "-m", tiny_model, "-l", "beep, hum, noise", "--json", str(good), str(bad)]
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}: has no audio stream (not an audio file)"]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["label"] == "beep"
