"""`earmark serve` goes through the same stage: under concurrent load, the same vectors and scores.

A real uvicorn subprocess (one model thread, as the ``classifier`` fixture) gets
the same file several times at once, among other uploads; every answer equals
``Classifier.classify``/``embed`` of that file, bit for bit.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import httpx
import numpy as np
import pytest

from earmark import Classifier, synth
from helpers import ServerProcess, encode

pytestmark = pytest.mark.server

LABELS = ["beep", "hum", "noise", "clicks", "chirp", "silence"]


def test_concurrent_requests_score_and_embed_like_the_library(
    tiny_model: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # a fresh classifier, as the server's: the session's may hold label embeddings computed with
    # other labels (a text's embedding moves by ~6e-8 with the texts it is batched with)
    classifier = Classifier(tiny_model, threads=1)
    target = encode(synth.sequence([("hum", 8), ("clicks", 7), ("beep", 8)], seed=5), tmp_path / "target.mp3")
    other = encode(synth.make("chirp", 14.0, seed=2), tmp_path / "other.ogg")
    emb, pred = classifier.embed(target), classifier.classify(target, LABELS)
    server = ServerProcess(home=tmp_path_factory.mktemp("serve-home"))
    try:

        def classify(path: Path) -> dict[str, object]:
            r = httpx.post(
                server.url + "/api/v1/classify",
                files={"file": (path.name, path.read_bytes())},
                data={"labels": ",".join(LABELS), "windows": "true"},
                timeout=300,
            )
            assert r.status_code == 200, r.text
            return dict(r.json())

        def embed(path: Path) -> dict[str, object]:
            r = httpx.post(
                server.url + "/api/v1/embed", files={"file": (path.name, path.read_bytes())}, timeout=300
            )
            assert r.status_code == 200, r.text
            return dict(r.json())

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(classify, [target, other, target, other, target, target]))
            vectors = list(pool.map(embed, [target, other, target]))
    finally:
        assert server.stop() == 0
    want = json.loads(json.dumps([asdict(w) for w in pred.windows]))
    mine = [a for a in answers if a["source"] == "target.mp3"]
    assert len(mine) == 4
    for answer in mine:
        assert answer["windows"] == want, "the server scored a window differently from the library"
        assert answer["scores"] == {s.label: s.probability for s in pred.scores}
    for got in (vectors[0], vectors[2]):
        np.testing.assert_array_equal(
            np.asarray(got["vectors"], np.float32), emb.vectors, err_msg="the server embedded differently"
        )
