"""The app factory wires the library and event log into the API and the page."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from earmark.library import TagOptions, tag_paths
from earmark.server.api import create_app
from earmark.store import Database
from helpers import LABELS, sound_file


def test_library_and_events_endpoints_and_tabs_with_a_database(classifier, tmp_path) -> None:
    db = Database(tmp_path / "earmark.db")
    lib = tmp_path / "lib"
    lib.mkdir()
    for i, kind in enumerate(["beep", "hum", "noise"]):
        sound_file(lib, kind, 3, ".wav", seed=i)
    list(tag_paths(db, [lib], TagOptions(labels=tuple(LABELS)), classifier))
    app = create_app(classifier, db=db, ui=True)
    with TestClient(app) as client:
        hits = client.get("/api/v1/library/search", params={"q": "beep", "k": 3}).json()["results"]
        assert len(hits) == 3 and hits[0]["path"].endswith("beep-0.wav")
        assert client.get("/api/v1/events").json() == {"events": []}
        assert client.get("/api/v1/events/nosuchevent").status_code == 404
        config = client.get("/ui/config").text
        assert '"Library"' in config and '"Events"' in config


@pytest.mark.parametrize("route", ["/api/v1/library/search?q=beep", "/api/v1/events"])
def test_without_a_database_store_routes_answer_503_json(classifier, route: str) -> None:
    with TestClient(create_app(classifier, ui=False)) as client:
        r = client.get(route)
        assert r.status_code == 503
        assert set(r.json()) == {"error"} and "database" in r.json()["error"]["message"]
