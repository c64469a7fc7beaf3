"""One windows -> embeddings stage for every surface (real files, the tiny model).

One file gives bit-identical window embeddings and window scores through
``Classifier.classify``, ``classify_many`` (in a folder, in two orders),
``earmark classify DIR``, ``tag``, ``eval`` and ``monitor`` (``serve`` is in
test_stage_serve.py); live and file sources mix down alike; the monitor scores
tails and short files; a model replaced in place is never served stale vectors.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from earmark import Classifier, synth
from earmark.classify import AudioEmbedding
from earmark.cli import cli
from earmark.errors import AudioError
from earmark.evaluate.cache import EmbeddingCache, embed_files
from earmark.library import ModelRef, TagOptions, tag_paths
from earmark.monitor.config import MonitorConfig
from earmark.monitor.rules import Rule
from earmark.monitor.runner import Monitor, WindowResult
from earmark.monitor.sources import SourceSpec, open_reader
from earmark.stage import embed_many, window_spans
from earmark.store import Database
from earmark.types import ClassifyOptions
from helpers import TINY_MODEL, encode

LABELS = ["beep", "hum", "noise", "clicks", "chirp", "silence"]


@pytest.fixture(scope="module")
def classifier(tiny_model: str) -> Classifier:
    """This module's own classifier: the session's may hold label embeddings computed in other batches.

    A label's text embedding depends (by ~6e-8) on the texts it was embedded with, so a classifier
    that embedded other label sets first can differ from a fresh ``earmark classify`` in the 6th
    decimal of a probability. Here both embed these labels first and together.
    """
    return Classifier(tiny_model, threads=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 23 s mp3 (hum, clicks, beep) among other files: a short beep, a WAV named .dat, text, a fake .wav."""
    root = tmp_path_factory.mktemp("stage")
    encode(synth.sequence([("hum", 8), ("clicks", 7), ("beep", 8)], seed=5), root / "target.mp3")
    encode(synth.make("beep", 3.0, seed=1), root / "a-short.wav")
    encode(synth.make("chirp", 12.0, seed=2), root / "b-take.wav")
    shutil.move(root / "b-take.wav", root / "b-take.dat")  # a WAV whose extension lies
    (root / "notes.txt").write_text("not audio at all\n" * 10)
    (root / "z-broken.wav").write_text("this is text, not a wav\n" * 10)
    return root


@pytest.fixture(scope="module")
def reference(classifier: Classifier, folder: Path) -> tuple[AudioEmbedding, Any]:
    """The target through Classifier.embed / classify: what every other surface must give."""
    target = folder / "target.mp3"
    return classifier.embed(target), classifier.classify(target, LABELS)


def _target_of(results: Iterator[tuple[Any, Any]]) -> Any:
    return next(r for s, r in results if str(s).endswith("target.mp3"))


def test_classify_many_and_embed_many_in_any_order_equal_classify(
    classifier: Classifier, folder: Path, reference: tuple[AudioEmbedding, Any]
) -> None:
    emb, pred = reference
    assert [s for s, _ in emb.spans_s] == [0.0, 5.0, 10.0, 13.0], "the last window reaches the end"
    files = sorted(p for p in folder.iterdir() if p.suffix != ".txt")
    for order in (files, files[::-1]):
        got = _target_of(iter(embed_many(classifier, order)))
        np.testing.assert_array_equal(got.vectors, emb.vectors, err_msg="embed_many changed the vectors")
        preds = list(classifier.classify_many(order, LABELS))
        assert sum(isinstance(p, AudioError) for p in preds) == 1, "the fake .wav is reported"
        mine = next(p for p in preds if not isinstance(p, AudioError) and p.source.endswith("target.mp3"))
        assert mine.windows == pred.windows and mine.scores == pred.scores, "classify_many != classify"


def test_classify_dir_finds_audio_by_content_and_scores_like_classify(
    folder: Path, reference: tuple[AudioEmbedding, Any]
) -> None:
    _, pred = reference
    args = ["classify", str(folder), "-l", ",".join(LABELS), "--json", "--timeline"]
    result = CliRunner().invoke(cli, [*args, "--model", str(TINY_MODEL), "--threads", "1"])
    assert result.exit_code == 1, result.output  # the fake .wav fails; the rest go on
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    sources = [Path(r["source"]).name for r in rows]
    assert sources == ["a-short.wav", "b-take.dat", "target.mp3"], "a WAV named .dat is audio; text is not"
    assert "z-broken.wav" in result.stderr
    target = rows[-1]
    want = json.loads(json.dumps([asdict(w) for w in pred.windows]))
    # the CLI's model runs on its own thread count (--threads 1) and prints 6 decimals: the
    # same windows, the same scores to the printed precision (bit-identity is tested in-process above)
    assert [(w["start_s"], w["end_s"]) for w in target["windows"]] == [
        (w["start_s"], w["end_s"]) for w in want
    ]
    for got_w, want_w in zip(target["windows"], want, strict=True):
        for key in ("probabilities", "cosines"):
            np.testing.assert_allclose(
                got_w[key], want_w[key], atol=2e-6, err_msg="classify DIR scores like classify"
            )
    np.testing.assert_allclose(
        [target["scores"][s.label] for s in pred.scores], [s.probability for s in pred.scores], atol=2e-6
    )


def test_tag_stores_the_same_vectors_and_scores_from_full_precision(
    classifier: Classifier, folder: Path, reference: tuple[AudioEmbedding, Any], tmp_path: Path
) -> None:
    emb, pred = reference
    db = Database(tmp_path / "lib.db")
    events = list(tag_paths(db, [folder], TagOptions(labels=tuple(LABELS)), classifier))
    assert sum(1 for e in events if getattr(e, "how", None) == "embedded") == 4
    row = db.conn.execute(
        "SELECT e.vectors, f.top_label, f.top_score, p.scores FROM lib_files f"
        " JOIN lib_embeddings e ON e.id=f.embedding_id JOIN lib_predictions p ON p.id=f.prediction_id"
        " WHERE f.path LIKE '%target.mp3'"
    ).fetchone()
    assert row["vectors"] == emb.vectors.astype(np.float16).tobytes(), "tag stored other vectors"
    assert (row["top_label"], row["top_score"]) == (pred.top.label, pred.top.probability), (
        "tag's scores come from the full-precision vectors, as classify's"
    )
    assert [[s[0], s[1]] for s in json.loads(row["scores"])] == [
        [s.label, s.probability] for s in pred.scores
    ]


def test_eval_embeds_the_same_vectors(
    classifier: Classifier, folder: Path, reference: tuple[AudioEmbedding, Any], tmp_path: Path
) -> None:
    emb, _ = reference
    target = str(folder / "target.mp3")
    cache = EmbeddingCache(Database(tmp_path / "eval.db"))
    for item in (
        *embed_files(classifier, [target], options=classifier.options, cache=None),
        *embed_files(classifier, [target], options=classifier.options, cache=cache),
    ):
        assert not item.cached
        assert isinstance(item.result, AudioEmbedding)
        np.testing.assert_array_equal(item.result.vectors, emb.vectors, err_msg="eval embedded differently")


def _monitor(
    classifier: Classifier, spec: SourceSpec, rule: Rule, tmp: Path, *, hop_s: float, stop_after: int = 0
) -> tuple[list[WindowResult], Monitor]:
    """Run a monitor on one source; the windows it scored (stopping after ``stop_after`` if set)."""
    got: list[WindowResult] = []
    enough = threading.Event()

    def seen(w: WindowResult) -> None:
        got.append(w)
        if stop_after and len(got) >= stop_after:
            enough.set()

    config = MonitorConfig(sources=(spec,), rules=(rule,), sinks=(), window_s=10.0, hop_s=hop_s)
    monitor = Monitor(config, classifier, db=Database(tmp / f"{spec.name}.db"), sinks=[], on_window=seen)
    if not stop_after:
        monitor.run()
        return got, monitor
    monitor.start()
    try:
        assert enough.wait(120), f"only {len(got)} windows from {spec.name} within the hang guard"
    finally:
        monitor.request_stop()
        monitor.shutdown()
    return got[:stop_after], monitor


def _rule(threshold: float = 0.75) -> Rule:
    return Rule(
        name="beep",
        labels=("beep",),
        against=tuple(x for x in LABELS if x != "beep"),
        threshold=threshold,
        k=1,
        n=1,
    )


def test_monitor_on_a_file_scores_like_classify(
    classifier: Classifier, folder: Path, reference: tuple[AudioEmbedding, Any], tmp_path: Path
) -> None:
    """`earmark monitor FILE --hop-s 5 --fast`: the same windows (the tail too) and the same scores."""
    _, pred = reference
    rule = _rule()
    spec = SourceSpec(
        name="file", kind="file", target=str(folder / "target.mp3"), realtime=False, gate_dbfs=None
    )
    got, _ = _monitor(classifier, spec, rule, tmp_path, hop_s=5.0)
    assert [(w.start_s, w.end_s) for w in got] == [(w.start_s, w.end_s) for w in pred.windows]
    for w, want in zip(got, pred.windows, strict=True):
        assert w.probs["beep"] == dict(zip(rule.candidates, want.probabilities, strict=True)), (
            f"monitor scored the window at {w.start_s} s differently from classify"
        )


@pytest.mark.parametrize(
    "parts, event_from_s",
    [
        ([("beep", 7.0)], 0.0),  # shorter than one window: one short window
        ([("silence", 18.0), ("beep", 5.0)], 13.0),  # heard only in the tail window
    ],
    ids=["7s", "23s"],
)
def test_monitor_scores_every_second_of_short_files_and_tails(
    classifier: Classifier, tmp_path: Path, parts: list[tuple[str, float]], event_from_s: float
) -> None:
    path = encode(synth.sequence(parts, seed=3), tmp_path / "clip.flac")
    duration = sum(s for _, s in parts)
    spec = SourceSpec(name="clip", kind="file", target=str(path), realtime=False, gate_dbfs=None)
    got, monitor = _monitor(classifier, spec, _rule(threshold=0.5), tmp_path, hop_s=5.0)
    spans = [(w.start_s, w.end_s) for w in got]
    want = [(s / 48_000, e / 48_000) for s, e in window_spans(round(duration * 48_000), 480_000, 240_000)]
    assert spans == want, "the monitor cut other windows than classify"
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(duration), "every second of audio is scored"
    rows = monitor.db.conn.execute("SELECT label, start_s FROM monitor_events").fetchall()
    assert [r["label"] for r in rows] == ["beep"], (
        f"the beep was not found (windows: {[(w.start_s, w.probs['beep']['beep']) for w in got]})"
    )
    hits = [w.start_s for w in got if w.probs["beep"]["beep"] >= 0.5]
    assert hits == [event_from_s], "the beep is heard in the window that holds it (the short one, the tail)"


class _OneShot(ThreadingHTTPServer):
    daemon_threads = True


def _serve_file(path: Path) -> tuple[_OneShot, str]:
    """A local HTTP server that streams a file's bytes (as an Icecast-like live source would)."""
    data = path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.end_headers()
            try:
                for i in range(0, len(data), 8192):
                    self.wfile.write(data[i : i + 8192])
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = _OneShot(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/live.wav"


def test_a_stereo_stream_scores_and_measures_like_the_same_file(
    classifier: Classifier, tmp_path: Path
) -> None:
    """One downmix rule: a stereo URL source is not 3 dB louder than the file read by classify."""
    left = synth.sequence([("beep", 12.0), ("silence", 8.0)], seed=7)
    right = synth.sequence([("hum", 6.0), ("noise", 14.0)], seed=8) * 0.5
    path = _stereo_wav(left, right, tmp_path / "stereo.wav")
    rule = _rule()
    n = len(window_spans(left.size, 480_000, 240_000))
    file_spec = SourceSpec(name="file", kind="file", target=str(path), realtime=False, gate_dbfs=None)
    from_file, _ = _monitor(classifier, file_spec, rule, tmp_path, hop_s=5.0)
    server, url = _serve_file(path)
    try:
        url_spec = SourceSpec(name="url", kind="url", target=url, gate_dbfs=None)
        from_url, _ = _monitor(classifier, url_spec, rule, tmp_path, hop_s=5.0, stop_after=n)
    finally:
        server.shutdown()
    assert len(from_file) == n
    for a, b in zip(from_file, from_url, strict=True):
        assert (a.start_s, a.end_s) == (b.start_s, b.end_s)
        assert a.level_dbfs == b.level_dbfs, f"stream level {b.level_dbfs} dBFS != file {a.level_dbfs} dBFS"
        assert a.probs == b.probs, f"the stream scored the window at {a.start_s} s differently"


def _stereo_wav(left: np.ndarray, right: np.ndarray, path: Path, rate: int = synth.RATE) -> Path:
    """A 16-bit stereo WAV with a different signal in each channel."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(_s16(left, right).tobytes())
    return path


def _s16(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return (np.clip(np.stack([left, right], axis=1), -1, 1) * 32767).astype("<i2")


def test_raw_pcm_on_stdin_mixes_down_and_resamples_like_the_file(tmp_path: Path) -> None:
    """One downmix and output rule: stereo 44.1 kHz PCM piped to `earmark monitor` is the WAV, sample for sample."""
    rate = 44_100
    left, right = synth.make("beep", 3.0, seed=1, rate=rate), synth.make("hum", 3.0, seed=2, rate=rate) * 0.5
    path = _stereo_wav(left, right, tmp_path / "stereo44.wav", rate=rate)
    spec = SourceSpec(name="file", kind="file", target=str(path), realtime=False)
    from_file = np.concatenate(list(open_reader(spec, 48_000, threading.Event())))
    pipe = SourceSpec(name="pipe", kind="stdin", input_rate_hz=rate, channels=2, sample_format="s16le")
    raw = io.BytesIO(_s16(left, right).tobytes())
    from_stdin = np.concatenate(list(open_reader(pipe, 48_000, threading.Event(), stdin=raw)))
    assert from_stdin.size == from_file.size, "stdin gave another length of audio than the file"
    np.testing.assert_array_equal(
        from_stdin, from_file, err_msg="stdin audio is mixed or resampled differently"
    )


def _replace_weights(model: Path) -> None:
    """Retrain in place: the same folder and file name, other weights."""
    from safetensors.numpy import load_file, save_file

    weights = load_file(model / "model.safetensors")
    name = next(k for k in sorted(weights) if "audio" in k and weights[k].dtype == np.float32)
    weights[name] = weights[name] + np.float32(1e-3)
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})


def test_weights_replaced_in_place_are_embedded_again(folder: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL, model)
    files = [folder / "a-short.wav"]
    db = Database(tmp_path / "lib.db")
    cache = EmbeddingCache(db)

    def tag() -> list[str]:
        ref = ModelRef(str(model), lambda: Classifier(str(model), threads=1))
        return [
            e.how for e in tag_paths(db, files, TagOptions(labels=("beep", "hum")), ref) if hasattr(e, "how")
        ]

    def evaluate() -> list[bool]:
        clf = Classifier(str(model), threads=1)
        return [
            e.cached
            for e in embed_files(clf, [str(f) for f in files], options=ClassifyOptions(), cache=cache)
        ]

    assert (tag(), evaluate()) == (["embedded"], [True]), "eval reads what tag stored: one store, one key"
    assert (tag(), evaluate()) == (["skipped"], [True])
    _replace_weights(model)
    assert tag() == ["embedded"], "tag reused vectors of the old weights"
    assert evaluate() == [True], "eval reads what tag stored for the new weights"
    _replace_weights(model)
    assert evaluate() == [False], "eval reused vectors of the old weights"
