"""``POST /v1/embeddings`` through the real `openai` client against a real `earmark serve` (tiny model)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import pytest

from earmark import synth
from earmark.server.embeddings_routes import clip_vector
from helpers import encode, sound_file

pytestmark = pytest.mark.server
openai = pytest.importorskip("openai")

TEXTS = ["a steady embeddings beep", "an embeddings hum", "clicks, for the embeddings test"]


def _client(served):  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _data_uri(path: Path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


def _vector(embedding: list[float] | str) -> np.ndarray:
    if isinstance(embedding, str):  # encoding_format="base64" asked explicitly: little-endian float32
        return np.frombuffer(base64.b64decode(embedding), "<f4")
    return np.asarray(embedding, np.float32)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


def test_openai_client_embeds_texts_as_the_classifier_does(served, classifier) -> None:  # type: ignore[no-untyped-def]
    client = _client(served)
    expected = classifier.text_embeddings(TEXTS, ["{label}"])
    for encoding in (openai.NOT_GIVEN, "float", "base64"):  # not given: the client asks for base64, decodes
        answer = client.embeddings.create(model="tiny-clap", input=TEXTS, encoding_format=encoding)
        got = np.array([_vector(d.embedding) for d in answer.data], np.float32)
        assert [d.index for d in answer.data] == [0, 1, 2], "one vector per text, in input order"
        assert answer.model.endswith("tiny-clap") and answer.usage.prompt_tokens == sum(map(len, TEXTS))
        # the same texts embedded in the same batch: the same numbers as the library
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=f"{encoding} vectors differ")
    one = client.embeddings.create(model="tiny-clap", input=TEXTS[0])
    np.testing.assert_allclose(one.data[0].embedding, expected[0], atol=1e-6)


def test_openai_client_embeds_audio_as_the_classifier_does(served, classifier, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = _client(served)
    beep = sound_file(tmp_path, "beep", 3)
    seq = encode(synth.sequence([("hum", 8), ("clicks", 8)]), tmp_path / "seq.wav")
    answer = client.embeddings.create(model="tiny-clap", input=[_data_uri(beep), "beep", _data_uri(seq)])
    got = [np.asarray(d.embedding, np.float32) for d in answer.data]
    short = classifier.embed(beep.read_bytes()).vectors
    assert short.shape[0] == 1, "3 s of audio is one window"
    np.testing.assert_allclose(got[0], short[0], atol=1e-6, err_msg="a short sound is its window's vector")
    np.testing.assert_allclose(got[1], classifier.text_embeddings(["beep"], ["{label}"])[0], atol=1e-6)
    windows = classifier.embed(seq.read_bytes()).vectors
    assert windows.shape[0] == 3
    np.testing.assert_allclose(got[2], clip_vector(windows), atol=1e-6, err_msg="a long sound: window mean")
    assert float(got[0] @ got[1]) > float(
        got[0] @ client.embeddings.create(model="tiny-clap", input="hum").data[0].embedding
    )
    plain = client.embeddings.create(
        model="tiny-clap",
        input=[base64.b64encode(beep.read_bytes()).decode()],
        extra_body={"modality": "audio"},
    )
    np.testing.assert_allclose(plain.data[0].embedding, short[0], atol=1e-6)


def test_embeddings_never_fetch_urls_and_errors_have_the_documented_shape(served, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = served.url + "/v1/embeddings"
    for link in ("http://127.0.0.1:9/x.wav", "https://example.org/a.mp3", "file:///etc/passwd"):
        for extra in ({}, {"modality": "audio"}):
            r = httpx.post(url, json={"model": "tiny-clap", "input": [link], **extra}, timeout=60)
            assert "never fetches URLs" in _error(r, 422, "invalid_options")
    r = httpx.post(url, json={"model": "gpt-4", "input": ["x"]}, timeout=60)
    assert "not served here" in _error(r, 422, "invalid_options")
    r = httpx.post(url, json={"model": "tiny-clap", "input": []}, timeout=60)
    assert "empty" in _error(r, 422, "invalid_options")
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
    _error(httpx.post(url, json={"model": "tiny-clap", "input": [png]}, timeout=60), 415, "not_audio")
    r = httpx.post(url, json={"model": "tiny-clap", "input": ["x"], "dimensions": 3}, timeout=60)
    assert "dimensions" in _error(r, 422, "invalid_options")
    r = httpx.post(url, json={"model": "tiny-clap", "input": [[1, 2, 3]]}, timeout=60)
    _error(r, 422, "invalid_request")
    # also at /api/v1/embeddings, and listed in the OpenAPI document
    r = httpx.post(served.url + "/api/v1/embeddings", json={"model": "tiny-clap", "input": "x"}, timeout=60)
    assert r.status_code == 200 and r.json()["object"] == "list"
    paths = httpx.get(served.url + "/openapi.json", timeout=60).json()["paths"]
    assert {"/v1/embeddings", "/api/v1/embeddings"} <= set(paths)
