"""The library REST router on a bare FastAPI app (in-process, TestClient), and the Library tab's handlers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from earmark.library.review import review_queue
from earmark.server.api import add_error_handlers
from earmark.server.library_routes import router
from earmark.server.library_tab import (
    build_library_tab,
    decide_and_next,
    load_audio,
    next_review,
    search_rows,
)
from earmark.store import Database


def kind_of(path: str) -> str:
    return Path(path).name.split("_")[0].split(" ")[0]


@pytest.fixture
def app(library_copy, classifier) -> FastAPI:  # type: ignore[no-untyped-def]
    app = FastAPI()
    app.include_router(router)
    add_error_handlers(app)  # earmark errors -> {"error": {"code", "message"}}, as create_app does
    app.state.db = Database(library_copy[2])
    app.state.classifier = classifier
    return app


def _client(app: FastAPI) -> TestClient:
    return TestClient(app)


def test_search_and_similar_endpoints(app: FastAPI) -> None:
    with _client(app) as client:
        r = client.get("/api/v1/library/search", params={"q": "chirp", "k": 5})
        assert r.status_code == 200
        body = r.json()
        assert len(body["results"]) == 5 and kind_of(body["results"][0]["path"]) == "chirp"
        assert isinstance(body["took_ms"], float) and body["took_ms"] >= 0  # speed: bench/, not here
        first = body["results"][0]["file_id"]
        r = client.get(f"/api/v1/library/similar/{first}", params={"k": 4})
        assert r.status_code == 200 and [kind_of(x["path"]) for x in r.json()["results"]].count("chirp") >= 3
        assert (client.get("/api/v1/library/similar/999999")).status_code == 404
        assert (client.get("/api/v1/library/search", params={"q": "   "})).status_code == 422
        assert (client.get("/api/v1/library/search", params={"q": "x", "k": 0})).status_code == 422


def test_review_endpoints(app: FastAPI) -> None:
    with _client(app) as client:
        r = client.get("/api/v1/library/review", params={"limit": 2})
        items = r.json()["items"]
        assert r.status_code == 200 and len(items) == 2 and len(items[0]["top"]) == 3
        fid = items[0]["file_id"]
        r = client.post(f"/api/v1/library/review/{fid}", json={"decision": "relabel", "label": "hum"})
        assert r.status_code == 200 and r.json()["label"] == "hum"
        r = client.post(f"/api/v1/library/review/{fid}", json={"decision": "relabel"})
        assert r.status_code == 422 and "needs the new label" in r.json()["error"]["message"]
        r = client.post(f"/api/v1/library/review/{fid}", json={"decision": "delete"})
        assert r.status_code == 422
        assert (client.post("/api/v1/library/review/999999", json={"decision": "skip"})).status_code == 404
        left = (client.get("/api/v1/library/review", params={"limit": 1000})).json()["items"]
        assert fid not in [x["file_id"] for x in left]
        audio = client.get(f"/api/v1/library/files/{fid}/audio")
        assert audio.status_code == 200 and audio.content == Path(items[0]["path"]).read_bytes()


def test_router_without_a_model_says_it_is_loading(library_copy) -> None:  # type: ignore[no-untyped-def]
    app = FastAPI()
    app.include_router(router)
    add_error_handlers(app)
    app.state.db = Database(library_copy[2])
    app.state.classifier = None
    with _client(app) as client:
        r = client.get("/api/v1/library/search", params={"q": "beep"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert "loading" in r.json()["error"]["message"]


def test_library_tab_builds_and_its_handlers_work(library_copy, classifier) -> None:  # type: ignore[no-untyped-def]
    import gradio as gr

    db = Database(library_copy[2])
    with gr.Blocks() as demo, gr.Tab("Library"):
        build_library_tab(classifier, db)
    assert any(isinstance(b, gr.Dataframe) for b in demo.blocks.values())
    rows, status = search_rows(db, classifier, "noise", 5)
    assert len(rows) == 5 and kind_of(rows[0][5]) == "noise" and status == "5 files"
    rate, samples = load_audio(db, rows[0][-1])
    assert rate == 48000 and samples.size > 0
    fid, text, labels = next_review(db)
    assert fid == review_queue(db)[0].file_id and "beep" in labels
    nxt, _, _ = decide_and_next(db, fid, "accept", None)
    assert (
        nxt != fid and db.conn.execute("SELECT review_label FROM lib_files WHERE id=?", (fid,)).fetchone()[0]
    )
    assert search_rows(db, classifier, "", 5) == ([], "the search text is empty")
