"""The OpenAPI document: every route has a response model and documented errors, and a real sample
answer of each route (tiny model, real SQLite library and event log) validates against it.

A route without a sample fails ``test_every_route_has_a_sample``: add one line to ``SAMPLES``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from earmark import synth
from earmark.server.api import create_app
from earmark.server.settings import ServerSettings
from helpers import LABELS, encode

fastapi_testclient = pytest.importorskip("fastapi.testclient")
jsonschema = pytest.importorskip("jsonschema")


@dataclass(frozen=True)
class Ctx:
    """What samples may name: a stored library file, a monitor event with a clip, an audio file."""

    file_id: int
    event_id: str
    wav: Path


Sample = Callable[[Any, Ctx], Any]


def _wav_upload(x: Ctx) -> dict[str, Any]:
    return {"files": {"file": (x.wav.name, x.wav.read_bytes())}}


def _data_uri(x: Ctx) -> str:
    return "data:audio/wav;base64," + base64.b64encode(x.wav.read_bytes()).decode()


# (method, path template) -> a request answered 2xx. One line per route: a new route needs a new line.
SAMPLES: dict[tuple[str, str], Sample] = {
    ("GET", "/livez"): lambda c, x: c.get("/livez"),
    ("GET", "/readyz"): lambda c, x: c.get("/readyz"),
    ("GET", "/metrics"): lambda c, x: c.get("/metrics"),
    ("POST", "/api/v1/classify"): lambda c, x: c.post("/api/v1/classify", data={"labels": "beep, hum"}, **_wav_upload(x)),
    ("GET", "/api/v1/packs"): lambda c, x: c.get("/api/v1/packs"),
    ("POST", "/api/v1/embed"): lambda c, x: c.post("/api/v1/embed", **_wav_upload(x)),
    ("POST", "/api/v1/embeddings"): lambda c, x: c.post("/api/v1/embeddings", json={"model": "tiny-clap", "input": ["a beep", _data_uri(x)]}),
    ("POST", "/v1/embeddings"): lambda c, x: c.post("/v1/embeddings", json={"model": "tiny-clap", "input": "a hum", "encoding_format": "base64"}),
    ("POST", "/api/predict"): lambda c, x: c.post("/api/predict", json={"data": [_data_uri(x), "beep, hum"]}),
    ("GET", "/api/v1/library/search"): lambda c, x: c.get("/api/v1/library/search", params={"q": "a beep", "k": 2}),
    ("GET", "/api/v1/library/similar/{file_id}"): lambda c, x: c.get(f"/api/v1/library/similar/{x.file_id}"),
    ("GET", "/api/v1/library/review"): lambda c, x: c.get("/api/v1/library/review"),
    ("GET", "/api/v1/library/duplicates"): lambda c, x: c.get("/api/v1/library/duplicates"),
    ("POST", "/api/v1/library/review/{file_id}"): lambda c, x: c.post(f"/api/v1/library/review/{x.file_id}", json={"decision": "skip"}),
    ("GET", "/api/v1/library/files/{file_id}"): lambda c, x: c.get(f"/api/v1/library/files/{x.file_id}"),
    ("GET", "/api/v1/library/files/{file_id}/audio"): lambda c, x: c.get(f"/api/v1/library/files/{x.file_id}/audio"),
    ("GET", "/api/v1/events"): lambda c, x: c.get("/api/v1/events"),
    ("GET", "/api/v1/events/{event_id}"): lambda c, x: c.get(f"/api/v1/events/{x.event_id}"),
    ("GET", "/api/v1/events/{event_id}/clip"): lambda c, x: c.get(f"/api/v1/events/{x.event_id}/clip"),
}  # fmt: skip

# error answers: (method, path template, request, status) -> must match that route's documented error
ERROR_SAMPLES: list[tuple[str, str, Sample, int]] = [
    ("GET", "/api/v1/library/files/{file_id}", lambda c, x: c.get("/api/v1/library/files/999999"), 404),
    ("GET", "/api/v1/library/similar/{file_id}", lambda c, x: c.get("/api/v1/library/similar/999999"), 404),
    ("POST", "/api/v1/library/review/{file_id}", lambda c, x: c.post("/api/v1/library/review/999999", json={"decision": "skip"}), 404),
    ("GET", "/api/v1/library/search", lambda c, x: c.get("/api/v1/library/search", params={"q": " "}), 422),
    ("GET", "/api/v1/events", lambda c, x: c.get("/api/v1/events", params={"since": "someday"}), 422),
    ("GET", "/api/v1/events/{event_id}", lambda c, x: c.get("/api/v1/events/ev_0000"), 404),
    ("GET", "/api/v1/events/{event_id}/clip", lambda c, x: c.get("/api/v1/events/ev_0000/clip"), 404),
    ("POST", "/api/v1/classify", lambda c, x: c.post("/api/v1/classify", data={"labels": "beep"}, **_wav_upload(x)), 422),
    ("POST", "/v1/embeddings", lambda c, x: c.post("/v1/embeddings", json={"model": "tiny-clap", "input": ["http://x/a.wav"]}), 422),
]  # fmt: skip

PROBES = {"/livez", "/readyz"}  # answered without a key and never fail on a request's account


@pytest.fixture(scope="module")
def served(classifier, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Ctx]]:  # type: ignore[no-untyped-def]
    from earmark.library import TagOptions, tag_paths
    from earmark.monitor.clips import write_clip
    from earmark.monitor.events import EventLog, event_id, utc_iso
    from earmark.store import Database

    tmp = tmp_path_factory.mktemp("schema")
    (tmp / "lib").mkdir()
    for kind in ("beep", "hum", "clicks"):
        encode(synth.make(kind, 3.0), tmp / "lib" / f"{kind}.wav")
    db = Database(tmp / "earmark.db")
    list(tag_paths(db, [tmp / "lib"], TagOptions(labels=tuple(LABELS)), classifier))
    file_id = int(db.conn.execute("SELECT min(id) FROM lib_files").fetchone()[0])
    clip = write_clip(synth.make("beep", 2.0), 48_000, tmp / "clips" / "a.ogg", "ogg")
    started = utc_iso(time.time() - 60)
    eid = event_id("cam", "r", "beep", started)
    row = {"id": eid, "source": "cam", "rule": "r", "label": "beep", "status": "open", "start_s": 1.0}
    log = EventLog(db)
    log.open_event({**row, "started_at": started, "peak": 0.9, "model": "tiny"}, {"event": "start"}, [])
    log.close_event(
        eid, {"end_s": 3.0, "ended_at": started, "closed_by": "quiet", "clip_path": str(clip)}, {}, []
    )
    app = create_app(classifier, db=db, settings=ServerSettings(decode_workers=1), ui=False)
    with fastapi_testclient.TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the app did not become ready"
            time.sleep(0.05)
        yield client, Ctx(file_id=file_id, event_id=eid, wav=tmp / "lib" / "beep.wav")


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.upper(), path): op for path, item in doc["paths"].items() for m, op in item.items()}


def _validate(doc: dict[str, Any], op: dict[str, Any], response: Any, what: str) -> None:
    """The answer's status is documented for the route, and its body matches that status's schema."""
    status = str(response.status_code)
    documented = op["responses"]
    assert status in documented, (
        f"{what}: status {status} is not documented (documented: {sorted(documented)})"
    )
    content = documented[status].get("content", {})
    kind = response.headers.get("content-type", "").split(";")[0]
    if kind == "application/json":
        assert "application/json" in content, f"{what}: answers JSON, documents {sorted(content)}"
        schema = {**content["application/json"]["schema"], "components": doc.get("components", {})}
        try:
            jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)
        except jsonschema.ValidationError as ex:
            raise AssertionError(f"{what}: the answer does not match its schema: {ex.message}") from None
    else:
        major = kind.split("/")[0]
        assert kind in content or f"{major}/*" in content, (
            f"{what}: answers {kind}, documents {sorted(content)}"
        )


def test_every_route_has_a_sample(served) -> None:  # type: ignore[no-untyped-def]
    client, _ = served
    routes = set(_operations(client.get("/openapi.json").json()))
    missing = sorted(routes - set(SAMPLES))
    assert not missing, (
        f"routes without a sample answer: {missing}; add one line per route to SAMPLES in "
        "tests/test_server_schema.py (a request that answers 2xx)"
    )
    assert not set(SAMPLES) - routes, f"samples of routes the app no longer has: {set(SAMPLES) - routes}"


def test_every_route_documents_its_answer_and_errors(served) -> None:  # type: ignore[no-untyped-def]
    client, _ = served
    doc = client.get("/openapi.json").json()
    for (method, path), op in _operations(doc).items():
        what = f"{method} {path}"
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert ok and op["responses"][ok[0]].get("content"), f"{what}: no documented answer"
        schema = next(iter(op["responses"][ok[0]]["content"].values())).get("schema")
        assert schema, f"{what}: its answer has no schema (response model)"
        if path in PROBES:
            continue
        for status in ("401", "500"):
            error = op["responses"].get(status, {}).get("content", {}).get("application/json", {})
            assert error.get("schema", {}).get("$ref") == "#/components/schemas/ErrorResponse", (
                f"{what}: error {status} is not documented with the error shape"
            )
    assert client.get("/docs").status_code == 200
    for tag in ("library", "events"):
        assert any(tag in op.get("tags", []) for op in _operations(doc).values()), (
            f"/docs lists the {tag} routes"
        )


def test_sample_answers_match_the_schema(served) -> None:  # type: ignore[no-untyped-def]
    client, ctx = served
    doc = client.get("/openapi.json").json()
    operations = _operations(doc)
    for key, sample in SAMPLES.items():
        if key not in operations:
            continue  # reported by test_every_route_has_a_sample
        response = sample(client, ctx)
        assert 200 <= response.status_code < 300, (
            f"{key}: the sample answered {response.status_code}: {response.text[:300]}"
        )
        _validate(doc, operations[key], response, f"{key[0]} {key[1]}")


def test_error_answers_match_the_documented_shape(served) -> None:  # type: ignore[no-untyped-def]
    client, ctx = served
    doc = client.get("/openapi.json").json()
    operations = _operations(doc)
    for method, path, sample, status in ERROR_SAMPLES:
        response = sample(client, ctx)
        assert response.status_code == status, (
            f"{method} {path}: {response.status_code} {response.text[:300]}"
        )
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        _validate(doc, operations[(method, path)], response, f"{method} {path} ({status})")
