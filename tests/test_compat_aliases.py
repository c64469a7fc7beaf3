"""Gradio 3 clients' other spellings of the predict call: answered in place, never redirected."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from earmark.server import create_app
from earmark.server.settings import ServerSettings
from helpers import sound_file


@pytest.fixture(scope="module")
def client(classifier: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    app = create_app(classifier, settings=ServerSettings(decode_workers=1), ui=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "app did not become ready"
            time.sleep(0.05)
        yield c


def test_run_predict_and_a_trailing_slash_answer_like_api_predict(client: Any, tmp_path: Any) -> None:
    beep = sound_file(tmp_path, "beep", 3, ".wav").read_bytes()
    url = "data:audio/wav;base64," + base64.b64encode(beep).decode()
    for route in ("/api/predict/", "/run/predict", "/run/predict/"):
        r = client.post(route, json={"data": [url, "hum, beep"], "fn_index": 0}, follow_redirects=False)
        assert r.status_code == 200, f"{route} answered {r.status_code}: a Gradio 3 client gets no prediction"
        assert r.json()["data"][0]["label"] == "beep"
    r = client.post(
        "/api/predict/", files={"file": ("b.wav", beep)}, data={"labels": "hum, beep"}, follow_redirects=False
    )
    assert r.status_code == 200 and next(iter(r.json())) == "beep"
    # the aliases are not separate API entries: /docs documents /api/predict once
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/predict" in paths and "/run/predict" not in paths and "/api/predict/" not in paths
