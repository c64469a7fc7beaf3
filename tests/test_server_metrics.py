"""``/metrics`` parsed as Prometheus does: conventional names, units, and a route label for every route."""

from __future__ import annotations

import time

import pytest

from earmark import synth
from earmark.server.api import create_app
from earmark.server.settings import ServerSettings
from helpers import encode

fastapi_testclient = pytest.importorskip("fastapi.testclient")
parser = pytest.importorskip("prometheus_client.parser")

EXPECTED = {  # family -> (type, labels of its samples)
    "earmark_requests": ("counter", {"route", "status"}),
    "earmark_request_duration_seconds": ("histogram", {"route"}),
    "earmark_rejected_requests": ("counter", set()),
    "earmark_queue_requests": ("gauge", set()),
    "earmark_queue_capacity_requests": ("gauge", set()),
    "earmark_batch_size_windows": ("histogram", set()),
    "earmark_batch_duration_seconds": ("histogram", set()),
    "earmark_decode_duration_seconds": ("histogram", set()),
    "earmark_model_load_duration_seconds": ("gauge", set()),
    "earmark_ready": ("gauge", set()),
}

# one request to each of these, by the route template it should be counted under
VISITS = {
    "/api/v1/packs": "/api/v1/packs",
    "/api/v1/library/search?q=beep": "/api/v1/library/search",
    "/api/v1/library/similar/7": "/api/v1/library/similar/{file_id}",
    "/api/v1/library/files/7/audio": "/api/v1/library/files/{file_id}/audio",
    "/api/v1/events": "/api/v1/events",
    "/api/v1/events/abc": "/api/v1/events/{event_id}",
    "/api/v1/events/abc/clip": "/api/v1/events/{event_id}/clip",
    "/openapi.json": "/openapi.json",
    "/no/such/thing": "unmatched",
    "/wp-login.php": "unmatched",
}


@pytest.fixture(scope="module")
def client(classifier):  # type: ignore[no-untyped-def]
    app = create_app(classifier, settings=ServerSettings(decode_workers=1), ui=False, model_load_s=1.5)
    with fastapi_testclient.TestClient(app, raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the app did not become ready"
            time.sleep(0.05)
        yield c


def _families(client) -> dict[str, object]:  # type: ignore[no-untyped-def]
    text = client.get("/metrics").text
    # prometheus_client's `..._created` timestamps parse as families of their own: not ours to name
    return {f.name: f for f in parser.text_string_to_metric_families(text) if not f.name.endswith("_created")}


def test_metric_names_follow_prometheus_conventions(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    wav = encode(synth.make("hum", 2.0), tmp_path / "hum.wav")
    r = client.post(
        "/api/v1/classify", files={"file": ("hum.wav", wav.read_bytes())}, data={"labels": "hum, beep"}
    )
    assert r.status_code == 200, r.text
    families = _families(client)
    assert set(families) == set(EXPECTED), "the metric families /metrics exposes"
    for name, family in families.items():
        kind, labels = EXPECTED[name]
        assert family.type == kind, f"{name} is a {family.type}, documented as a {kind}"  # type: ignore[attr-defined]
        for sample in family.samples:  # type: ignore[attr-defined]
            assert set(sample.labels) - {"le"} == labels, f"{sample.name} has labels {sample.labels}"
            if kind == "counter":
                assert sample.name.endswith("_total"), f"counter sample {sample.name}"
        if "duration" in name or "seconds" in name:
            assert name.endswith("_duration_seconds"), f"a duration is named ..._duration_seconds: {name}"
    decodes = next(
        s for s in families["earmark_decode_duration_seconds"].samples if s.name.endswith("_count")
    )  # type: ignore[attr-defined]
    assert decodes.value >= 1, "the upload's decode is counted"
    load = families["earmark_model_load_duration_seconds"].samples[0]  # type: ignore[attr-defined]
    assert load.value == 1.5


def test_every_route_has_its_own_label(client) -> None:  # type: ignore[no-untyped-def]
    for path in VISITS:
        client.get(path)
    client.post("/api/v1/library/review/7", json={"decision": "skip"})
    client.post("/v1/embeddings", json={"model": "tiny-clap", "input": ["a hum"]})
    samples = _families(client)["earmark_requests"].samples  # type: ignore[attr-defined]
    seen = {s.labels["route"] for s in samples if s.name == "earmark_requests_total"}
    assert "other" not in seen, "no request falls into a catch-all label"
    expected = set(VISITS.values()) | {
        "/readyz",
        "/metrics",
        "/api/v1/library/review/{file_id}",
        "/v1/embeddings",
    }
    assert expected <= seen, f"routes missing from the labels: {expected - seen}"
    templates = set(client.get("/openapi.json").json()["paths"]) | {"/openapi.json", "/docs", "/redoc"}
    assert seen - {"unmatched", "/ui"} <= templates, "labels are route templates, never raw paths"
    statuses = {
        (s.labels["route"], s.labels["status"]) for s in samples if s.name == "earmark_requests_total"
    }
    assert ("unmatched", "404") in statuses and ("/v1/embeddings", "200") in statuses
