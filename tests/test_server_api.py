"""REST API in-process (real app, real tiny model, real decode workers) through Starlette's TestClient."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from earmark import synth
from earmark.server.api import create_app
from earmark.server.settings import ServerSettings
from helpers import encode, sound_file

fastapi_testclient = pytest.importorskip("fastapi.testclient")
TestClient = fastapi_testclient.TestClient

LABELS = "beep, hum, noise, clicks"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("api-files")
    png = tmp / "photo.wav"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    garbage = tmp / "garbage.mp3"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return {
        "beep": sound_file(tmp, "beep", 10, ".mp3"),
        "hum": sound_file(tmp, "hum", 6, ".wav"),
        "seq": encode(synth.sequence([("hum", 10), ("clicks", 10), ("beep", 10)]), tmp / "seq30.mp3"),
        "png": png,
        "garbage": garbage,
        "empty": tmp / "empty.wav",
        "long": _long_mp3(tmp / "long.mp3"),
    }


def _long_mp3(path: Path) -> Path:
    """30 minutes of 8 kbit/s noise: 1.8 MB that take seconds to decode even on a fast machine."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anoisesrc=d=1800:c=pink:r=8000", "-ac", "1"]
        + ["-c:a", "libmp3lame", "-b:a", "8k", "-y", str(path)],
        check=True,
    )
    return path


def _start(app):  # type: ignore[no-untyped-def]
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "app did not become ready"
        time.sleep(0.05)
    return client


@pytest.fixture(scope="module")
def client(classifier):  # type: ignore[no-untyped-def]
    app = create_app(classifier, settings=ServerSettings(decode_workers=1, max_upload_mb=2), ui=False)
    c = _start(app)
    yield c
    c.__exit__(None, None, None)


def _post(client, path: Path, labels: str = LABELS, route: str = "/api/v1/classify", **form):  # type: ignore[no-untyped-def]
    return client.post(route, files={"file": (path.name, path.read_bytes())}, data={"labels": labels, **form})


def _error(response, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return str(body["error"]["message"])


def test_classify_beep_matches_the_library(client, classifier, files) -> None:  # type: ignore[no-untyped-def]
    r = _post(client, files["beep"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == "beep" and body["uncertain"] is False and body["top"]["label"] == "beep"
    expected = classifier.classify(files["beep"].read_bytes(), LABELS, name="beep-0.mp3").to_dict()
    assert body == {**expected, "warnings": []}


def test_classify_long_audio_timeline_and_windows(client, files) -> None:  # type: ignore[no-untyped-def]
    body = _post(client, files["seq"], windows="true").json()
    assert [w["start_s"] for w in body["windows"]] == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert [s["label"] for s in body["timeline"]] == ["hum", "clicks", "beep"]
    assert "windows" not in _post(client, files["seq"]).json()


def test_options_are_applied_and_checked(client, files) -> None:  # type: ignore[no-untyped-def]
    body = _post(client, files["hum"], threshold="1", top_k="1", template="a {label} sound").json()
    assert body["uncertain"] is True and body["label"] is None and len(body["top_k"]) == 1
    assert "placeholder" in _error(_post(client, files["hum"], template="no field"), 422, "invalid_options")
    assert "threshold" in _error(_post(client, files["hum"], threshold="2"), 422, "invalid_request")
    assert "aggregate" in _error(_post(client, files["hum"], aggregate="median"), 422, "invalid_request")


def test_bad_labels_are_422_with_the_reason(client, files) -> None:  # type: ignore[no-untyped-def]
    assert "at least 2 labels" in _error(_post(client, files["hum"], labels="beep"), 422, "invalid_labels")
    flood = ",".join(f"label {i}" for i in range(10_000))
    decodes = _decode_count(client)
    assert "at most 1000" in _error(_post(client, files["hum"], labels=flood), 422, "invalid_labels")
    assert _decode_count(client) == decodes  # refused before any decoding or model work


def _decode_count(client) -> float:  # type: ignore[no-untyped-def]
    m = re.search(r"^earmark_decode_duration_seconds_count (\S+)$", client.get("/metrics").text, re.MULTILINE)
    assert m, "the decode histogram is missing from /metrics"
    return float(m.group(1))


def test_not_audio_415_and_undecodable_422(client, files) -> None:  # type: ignore[no-untyped-def]
    files["empty"].write_bytes(b"")
    assert "empty" in _error(_post(client, files["empty"]), 422, "undecodable_audio")
    assert "photo.wav: is a PNG image, not audio" == _error(_post(client, files["png"]), 415, "not_audio")
    assert "garbage.mp3" in _error(_post(client, files["garbage"]), 422, "undecodable_audio")
    # the server is still fine
    assert _post(client, files["hum"]).json()["label"] == "hum"


def test_upload_over_the_limit_is_413_before_and_while_streaming(client) -> None:  # type: ignore[no-untyped-def]
    big = b"\0" * 2_500_000
    r = client.post("/api/v1/classify", content=big, headers={"content-type": "application/octet-stream"})
    assert "2 MB limit" in _error(r, 413, "upload_too_large")

    def stream():  # type: ignore[no-untyped-def]
        for _ in range(50):  # no Content-Length: the cap applies as the body arrives
            yield b"\0" * 100_000

    r = client.post(
        "/api/v1/classify", content=stream(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    _error(r, 413, "upload_too_large")


def test_embed_audio_and_texts(client, classifier, files) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/embed", files={"file": ("seq.mp3", files["seq"].read_bytes())})
    body = r.json()
    assert body["kind"] == "audio" and body["model"] == classifier.model_id and len(body["spans_s"]) == 5
    vectors = np.array(body["vectors"], np.float32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the library embeds these 5 windows in one batch, the server one by one: equal to float noise
    np.testing.assert_allclose(vectors, classifier.embed(files["seq"].read_bytes()).vectors, atol=1e-6)
    body = client.post("/api/v1/embed", data={"texts": ["a beep", "a hum"]}).json()
    np.testing.assert_array_equal(
        np.array(body["vectors"], np.float32), classifier.backend.embed_text(["a beep", "a hum"])
    )
    body = client.post("/api/v1/embed", data={"texts": ["beep", "hum"], "template": "the {label}"}).json()
    np.testing.assert_array_equal(
        np.array(body["vectors"], np.float32), classifier.text_embeddings(["beep", "hum"], ["the {label}"])
    )
    _error(client.post("/api/v1/embed", data={}), 422, "invalid_options")
    r = client.post(
        "/api/v1/embed", files={"file": ("a.wav", files["hum"].read_bytes())}, data={"texts": ["x"]}
    )
    assert "not both" in _error(r, 422, "invalid_options")


def test_predict_keeps_the_original_shapes(client, files) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/predict",
        files={"file": ("b.mp3", files["beep"].read_bytes())},
        data={"labels": "hum,beep,noise"},
    )
    assert r.status_code == 200
    scores = r.json()
    assert next(iter(scores)) == "beep" and set(scores) == {"hum", "beep", "noise"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    r = client.post(
        "/api/predict",
        files={"audio": ("h.wav", files["hum"].read_bytes())},
        data={"candidate_labels": "beep, hum"},
    )
    assert list(r.json()) == ["hum", "beep"]
    url = "data:audio/mpeg;base64," + base64.b64encode(files["beep"].read_bytes()).decode()
    body = client.post("/api/predict", json={"data": [url, "hum, beep"], "fn_index": 0}).json()
    assert body["data"][0]["label"] == "beep" and body["is_generating"] is False
    assert [c["label"] for c in body["data"][0]["confidences"]] == ["beep", "hum"]
    body = client.post("/api/predict", json={"data": [{"name": "x.mp3", "data": url}, "hum, beep"]}).json()
    assert body["data"][0]["label"] == "beep"


def test_predict_never_fetches_urls(client) -> None:  # type: ignore[no-untyped-def]
    for url in ("http://127.0.0.1:9/x.wav", "https://example.org/a.mp3", "file:///etc/passwd"):
        r = client.post("/api/predict", json={"data": [url, "a, b"]})
        assert "never fetches URLs" in _error(r, 422, "invalid_options")
        r = client.post("/api/predict", json={"data": [{"name": "x", "data": url}, "a, b"]})
        assert "never fetches URLs" in _error(r, 422, "invalid_options")


def test_health_metrics_and_docs(client, classifier) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "model": classifier.model_id}
    text = client.get("/metrics").text
    for name in (
        "earmark_requests_total",
        "earmark_request_duration_seconds_bucket",
        "earmark_queue_requests",
        "earmark_queue_capacity_requests 33.0",
        "earmark_batch_size_windows_bucket",
        "earmark_decode_duration_seconds_count",
        "earmark_ready 1.0",
        "earmark_model_load_duration_seconds",
    ):
        assert name in text, name
    assert 'earmark_requests_total{route="/api/v1/classify",status="200"}' in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/classify", "/api/v1/embed", "/api/predict", "/livez", "/readyz", "/metrics"} <= set(
        paths
    )
    assert client.get("/docs").status_code == 200


def test_http_errors_have_the_same_shape(client) -> None:  # type: ignore[no-untyped-def]
    _error(client.get("/no/such/thing"), 404, "not_found")
    _error(client.get("/api/v1/classify"), 405, "method_not_allowed")
    assert "file" in _error(client.post("/api/v1/classify", data={"labels": "a, b"}), 422, "invalid_request")


def test_unexpected_errors_are_logged_never_echoed(classifier, caplog) -> None:  # type: ignore[no-untyped-def]
    app = create_app(classifier, settings=ServerSettings(decode_workers=1), ui=False)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail /srv/private/key.pem")

    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR, "earmark"):
        message = _error(c.get("/boom"), 500, "internal")
    assert "secret" not in message and "reference" in message
    ref = message.split("reference ")[1].split(")")[0]
    assert any(ref in rec.getMessage() and "secret detail" in str(rec.exc_info) for rec in caplog.records)


def test_api_key_guards_everything_but_probes(classifier, files) -> None:  # type: ignore[no-untyped-def]
    app = create_app(classifier, settings=ServerSettings(decode_workers=1, api_key="s3cret"), ui=False)
    c = _start(app)
    try:
        r = _post(c, files["hum"])
        assert "API key" in _error(r, 401, "unauthorized") and "Bearer" in r.headers["www-authenticate"]
        c.headers["authorization"] = "Bearer wrong"
        _error(_post(c, files["hum"]), 401, "unauthorized")
        _error(c.get("/metrics"), 401, "unauthorized")
        c.headers["authorization"] = "Bearer s3cret"
        assert _post(c, files["hum"]).json()["label"] == "hum"
        c.headers["authorization"] = "Basic " + base64.b64encode(b"anyone:s3cret").decode()
        assert c.get("/metrics").status_code == 200
        del c.headers["authorization"]
        assert c.get("/livez").status_code == 200 and c.get("/readyz").status_code == 200
    finally:
        c.__exit__(None, None, None)


@pytest.mark.slow
def test_decode_and_request_deadlines_are_504(classifier, files) -> None:  # type: ignore[no-untyped-def]
    # a 1 s decode deadline: the 30 min file takes many seconds to decode on any machine, the 6 s one
    # a few ms; the server's own warm-up is not bound by it (it has warmup_timeout_s)
    settings = ServerSettings(decode_workers=1, decode_timeout_s=1.0, max_duration_s=3600, max_upload_mb=10)
    app = create_app(classifier, settings=settings, ui=False)
    c = _start(app)
    try:
        message = _error(_post(c, files["long"]), 504, "decode_timeout")
        assert message == "long.mp3: took longer than 1 s to decode, so it was stopped"
        assert _post(c, files["hum"]).json()["label"] == "hum"  # the killed worker was replaced
    finally:
        c.__exit__(None, None, None)
    settings = ServerSettings(decode_workers=1, request_timeout_s=0.2, max_duration_s=3600, max_upload_mb=10)
    app = create_app(classifier, settings=settings, ui=False)
    c = _start(app)
    try:
        assert "longer than 0.2 s" in _error(_post(c, files["long"]), 504, "deadline")
    finally:
        c.__exit__(None, None, None)


def test_every_decode_worker_is_running_once_ready(classifier) -> None:  # type: ignore[no-untyped-def]
    # started while warming up, so a first burst of uploads does not share the CPU with their start-up
    app = create_app(classifier, settings=ServerSettings(decode_workers=3), ui=False)
    c = _start(app)
    try:
        live = app.state.engine.decoder._live
        assert len(live) == 3 and all(w.alive() for w in live)
    finally:
        c.__exit__(None, None, None)


def test_warm_up_failure_is_explained_and_retried_until_it_works(classifier, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # client deadlines far too small for a warm-up: they must not apply to it
    settings = ServerSettings(decode_workers=1, decode_timeout_s=0.01, request_timeout_s=0.01)
    monkeypatch.setenv("PYTHONHOME", "/nonexistent")  # decoder workers die before they start
    client = TestClient(create_app(classifier, settings=settings, ui=False), raise_server_exceptions=False)
    client.__enter__()
    try:
        body = _poll(client, lambda r: "last_error" in r.json())
        assert body["status"] == "starting" and body["waiting_for"] == "warm-up retry", body
        assert "decoder process did not start" in body["last_error"] and body["retry_in_s"] >= 1, body
        monkeypatch.delenv("PYTHONHOME")  # the operator fixes the cause; the next retry succeeds
        assert _poll(client, lambda r: r.status_code == 200) == {
            "status": "ready",
            "model": classifier.model_id,
        }
    finally:
        client.__exit__(None, None, None)


def _poll(client, done, timeout_s: float = 120):  # type: ignore[no-untyped-def]
    """/readyz's body once ``done(response)``; the timeout is only a hang guard."""
    deadline = time.monotonic() + timeout_s
    while not done(r := client.get("/readyz")):
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)
    return r.json()


def test_concurrent_requests_share_batches_and_results_do_not_depend_on_them(classifier, files) -> None:  # type: ignore[no-untyped-def]
    from earmark.server.engine import ServingEngine

    batches: list[int] = []

    def observe(kind: str, *values: float) -> None:
        if kind == "batch":
            batches.append(int(values[0]))

    engine = ServingEngine(
        classifier, ServerSettings(decode_workers=2, max_batch_size=4, max_wait_ms=200), observe=observe
    )
    sources = [files["seq"], files["beep"], files["hum"], files["seq"]]
    opts = engine.options()

    async def run(paths: list[Path]):  # type: ignore[no-untyped-def]
        return await asyncio.gather(
            *(engine.classify(p.read_bytes(), LABELS, opts, name=p.name) for p in paths)
        )

    try:
        alone = [asyncio.run(run([p]))[0] for p in sources]
        batches.clear()
        together = asyncio.run(run(sources))
    finally:
        engine.close()
    # windows per request: 5, 1, 1, 5; calls never exceed the backend's shape (one window on a CPU;
    # coalescing into bigger calls is tested on a stand-in model in test_stage_units.py)
    assert sum(batches) == 12 and max(batches) <= classifier.runner.batch
    assert together == alone  # bit for bit: every batch has the same shape
    library = classifier.classify(files["seq"].read_bytes(), LABELS, name="seq30.mp3")
    assert together[0].scores == library.scores, "the server scores as the library does, bit for bit"


def test_page_is_mounted_with_the_mic_script_and_refuses_url_values(classifier) -> None:  # type: ignore[no-untyped-def]
    import gradio as gr

    from earmark.server.ui import build_ui

    app = create_app(classifier, settings=ServerSettings(decode_workers=1))
    with TestClient(app) as c:
        r = c.get("/", follow_redirects=False)
        assert r.status_code in (302, 307) and r.headers["location"] == "/ui/"
        assert c.get("/ui/").status_code == 200
        config = c.get("/ui/config").json()
        assert "echoCancellation: false" in config["head"] and "getUserMedia" in config["head"]
        assert "zh-CN" in json.dumps(config.get("i18n_translations", config))
    blocks = build_ui(classifier)
    guarded = [b for b in blocks.blocks.values() if isinstance(b, (gr.Audio, gr.File))]
    assert len(guarded) >= 3
    for component in guarded:
        with pytest.raises(gr.Error, match="never fetches URLs"):
            asyncio.run(component.async_move_resource_to_block_cache("https://example.org/a.wav"))
        with pytest.raises(gr.Error, match="never fetches URLs"):
            component.move_resource_to_block_cache("http://169.254.169.254/latest/meta-data")


# --- classifier packs (issue 5): `served` runs `earmark serve --pack ab.pack.json` ---

PACK_LABELS = ["class A", "class B", "noise"]


def _held(nonsense_sets, kind: str = "class_b") -> Path:  # type: ignore[no-untyped-def]
    return nonsense_sets[1] / kind / f"{kind}-0.wav"


def _classify_served(served, path: Path, **form: str):  # type: ignore[no-untyped-def]
    import httpx

    return httpx.post(
        served.url + "/api/v1/classify", files={"file": (path.name, path.read_bytes())}, data=form, timeout=60
    )


@pytest.mark.slow
def test_a_served_pack_hears_what_zero_shot_cannot(served, nonsense_sets, fitted_pack, classifier) -> None:  # type: ignore[no-untyped-def]
    from earmark.adapt.packs import load_pack

    held = _held(nonsense_sets)  # a hum the pack never saw; it learned "class B" from 5 other hums
    r = _classify_served(served, held, pack="ab")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pack"] == "ab" and body["labels"] == PACK_LABELS
    assert body["label"] == "class B" and body["scores"]["class B"] > 0.9
    library = classifier.classify(held, pack=load_pack(fitted_pack))
    assert body["scores"] == pytest.approx({s.label: s.probability for s in library.scores}, abs=1e-5)
    # the same labels as text: the tiny model never read "class A" or "class B", and a hum is closest to
    # its "noise" caption, so zero-shot answers noise (0.83 seen) and gives class B under 0.1
    zero_shot = _classify_served(served, held, labels=", ".join(PACK_LABELS)).json()
    assert "pack" not in zero_shot and zero_shot["label"] != "class B"
    assert zero_shot["scores"]["class B"] < 0.5 < body["scores"]["class B"]
    # the pack's own labels, in any order, are the same request
    again = _classify_served(served, held, pack="ab", labels="noise\nclass B, class A").json()
    assert again == body == _classify_served(served, held, pack="ab", labels="").json()


@pytest.mark.slow
def test_pack_requests_are_checked_and_never_name_files(served, nonsense_sets, fitted_pack) -> None:  # type: ignore[no-untyped-def]
    held = _held(nonsense_sets)
    message = _error(_classify_served(served, held, pack="nope"), 422, "unknown_pack")
    assert message == "no classifier pack named 'nope' is served here; served packs: ab"
    # a client names packs, never files: paths (even the served pack's own) are just unknown names
    for name in ("../../etc/passwd", "/etc/passwd", str(fitted_pack), "ab.pack.json"):
        assert "served packs: ab" in _error(_classify_served(served, held, pack=name), 422, "unknown_pack")
    message = _error(_classify_served(served, held), 422, "invalid_labels")
    assert (
        message
        == "no labels given: send the candidate labels as `labels`, or name a classifier pack as `pack` (ab)"
    )
    message = _error(_classify_served(served, held, pack="ab", labels="beep, hum"), 422, "invalid_labels")
    assert "scores its own labels (class A, class B, noise)" in message


@pytest.mark.slow
def test_served_packs_are_listed_and_documented(served, fitted_pack, nonsense_sets) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from earmark.adapt.packs import load_pack

    pack = load_pack(fitted_pack)
    r = httpx.get(served.url + "/api/v1/packs", timeout=10)
    assert r.status_code == 200
    (info,) = r.json()["packs"]
    training = info.pop("training")
    assert info == {
        "name": "ab",
        "labels": PACK_LABELS,
        "model": pack.model,
        "digest": pack.digest,
        "examples": {"class A": 5, "class B": 5, "noise": 5},
        "cv_accuracy": pack.training["cv_accuracy"],
        "label_thresholds": dict(pack.label_thresholds),
    }
    assert training["cv_folds"] == pack.training["cv_folds"] and training["method"] == pack.training["method"]
    assert (
        "data" not in training and str(nonsense_sets[0]) not in r.text
    )  # where it was trained stays private
    api = httpx.get(served.url + "/openapi.json", timeout=10).json()
    assert "get" in api["paths"]["/api/v1/packs"]
    form = api["components"]["schemas"]["Body_classify_api_v1_classify_post"]
    assert "pack" in form["properties"] and "labels" not in form.get("required", [])
    assert "pack" in api["components"]["schemas"]["ClassifyResponse"]["properties"]
    assert {"name", "labels", "digest", "examples", "cv_accuracy"} <= set(
        api["components"]["schemas"]["PackInfo"]["properties"]
    )


@pytest.mark.slow
def test_pack_results_do_not_depend_on_the_batch(classifier, fitted_pack, nonsense_sets, files) -> None:  # type: ignore[no-untyped-def]
    from earmark.adapt.packs import load_pack
    from earmark.server.engine import ServingEngine

    pack = load_pack(fitted_pack)
    engine = ServingEngine(classifier, ServerSettings(decode_workers=2, max_batch_size=4, max_wait_ms=200))
    held = [_held(nonsense_sets, kind) for kind in ("class_a", "class_b", "noise")]
    opts = engine.options()

    async def one(path: Path, with_pack: bool):  # type: ignore[no-untyped-def]
        if with_pack:
            return await engine.classify(path.read_bytes(), None, opts, name=path.name, pack=pack)
        return await engine.classify(path.read_bytes(), LABELS, opts, name=path.name)

    async def run(jobs: list[tuple[Path, bool]]):  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(one(p, w) for p, w in jobs))

    jobs = [(held[0], True), (files["seq"], False), (held[1], True), (held[2], True)]
    try:
        alone = [asyncio.run(run([job]))[0] for job in jobs]
        together = asyncio.run(run(jobs))
    finally:
        engine.close()
    assert together == alone  # bit for bit, packs or not
    assert [p.label for p in together[::2]] == ["class A", "class B"] and together[3].label == "noise"
    assert together[1].labels == tuple(LABELS.split(", "))
    library = classifier.classify(held[1], pack=pack)
    assert [s.label for s in together[2].scores] == [s.label for s in library.scores]
    assert [s.probability for s in together[2].scores] == pytest.approx(
        [s.probability for s in library.scores], abs=1e-5
    )


def test_the_live_tab_classifies_with_a_chosen_pack(classifier, fitted_pack, nonsense_sets, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from earmark.adapt.packs import load_pack
    from earmark.server.ui import DirectRunner
    from earmark.server.ui_live import make_handler

    settings = ServerSettings(live_window_s=1, live_every_s=1)
    on_chunk = make_handler(DirectRunner(classifier), settings, {"ab": load_pack(fitted_pack)}, wait=True)
    chunk = _held(nonsense_sets)  # 1 s of hum, sent as the page sends microphone chunks (a WAV file)
    html, state = asyncio.run(on_chunk(str(chunk), "ignored, labels", 0.7, None, "ab", None))
    assert [r.top for r in state.history] == ["class B"] and 'data-label="class B"' in html
    html, state = asyncio.run(on_chunk(str(chunk), "ignored, labels", 0.7, state, "gone", None))
    assert "Cannot classify: no classifier pack named &#x27;gone&#x27;" in html and len(state.history) == 1
    html, state = asyncio.run(on_chunk(str(chunk), "class A, class B, noise", 0.7, state, "", None))
    assert state.history[-1].top == "noise"  # zero-shot: the tiny model never read "class B"
