"""``POST /v1/embeddings``: CLAP embeddings in the shape OpenAI, TEI and infinity clients speak.

Texts are strings; sounds are base64 audio files, as a data URI
(``data:audio/wav;base64,...``) or, with ``"modality": "audio"``, as plain
base64. One vector per input, L2-normalised: a text's is
``Classifier.text_embeddings([text], ["{label}"])``; a sound's is the
normalised mean of its window embeddings (one window for audio up to the
model's 10 s), the vector ``Classifier.embed`` gives for that audio.

Audio given as a URL is refused: the server never fetches what a client names.
The same route answers at ``/api/v1/embeddings``.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..errors import ConfigError
from .compat import _audio_payload
from .routes import ERROR_RESPONSES, check_texts, engine_of
from .schemas import EmbeddingsResponse

__all__ = ["EmbeddingsRequest", "clip_vector", "embeddings", "embeddings_v1"]

MAX_AUDIO_INPUTS = 32
_URL_SCHEMES = ("http://", "https://", "ftp://", "file://", "rtsp://", "s3://")

embeddings = APIRouter(prefix="/api/v1", tags=["api"], responses=ERROR_RESPONSES)
embeddings_v1 = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)


class EmbeddingsRequest(BaseModel):
    """The OpenAI embeddings request; ``modality`` is infinity's extension."""

    model: str = Field(description="The served model (its id as `/readyz` names it, or its last path part).")
    input: str | list[str] = Field(
        description="Texts, and/or audio files as base64 data URIs (`data:audio/wav;base64,...`). "
        "URLs are refused: the server never fetches them.",
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: each vector as little-endian float32 bytes, base64-encoded."
    )
    modality: Literal["text", "audio"] | None = Field(
        None,
        description="`audio`: every input is audio (data URI or plain base64); `text`: every input is "
        "text; left out: data URIs are audio, anything else text.",
    )
    dimensions: int | None = Field(None, description="If given, must be the model's dimension.")
    user: str | None = Field(None, description="Accepted and ignored.")


async def _embeddings(request: Request, body: EmbeddingsRequest) -> dict[str, Any]:
    engine = engine_of(request)
    model = engine.classifier.model_id
    _check_model(body.model, model)
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    if not items:
        raise ConfigError("input is empty: send at least one text or audio file")
    kinds = [_kind(item, body.modality) for item in items]
    texts = [item for item, kind in zip(items, kinds, strict=True) if kind == "text"]
    n_audio = len(items) - len(texts)
    if n_audio > MAX_AUDIO_INPUTS:
        raise ConfigError(f"{n_audio} audio inputs; at most {MAX_AUDIO_INPUTS} per request")
    vectors: list[np.ndarray | None] = [None] * len(items)
    if texts:
        check_texts(texts)
        text_vectors = iter(await engine.embed_texts(texts, ("{label}",)))
        vectors = [next(text_vectors) if k == "text" else None for k in kinds]
    opts = engine.options()
    for i, (item, kind) in enumerate(zip(items, kinds, strict=True)):
        if kind == "audio":  # one at a time: each takes its own place in the queue
            data, _ = _audio_payload(
                item if item.startswith("data:") else {"name": f"input[{i}]", "data": item}
            )
            vectors[i] = clip_vector((await engine.embed_upload(data, opts, name=f"input[{i}]")).vectors)
    dim = int(next(v for v in vectors if v is not None).shape[0])
    if body.dimensions is not None and body.dimensions != dim:
        raise ConfigError(f"dimensions={body.dimensions}: this model's embeddings have {dim} dimensions")
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
            if v is not None
        ],
        "model": model,
        # no tokenizer bill here: texts count their characters (as infinity does), audio nothing
        "usage": {"prompt_tokens": sum(map(len, texts)), "total_tokens": sum(map(len, texts))},
    }


_DOC = {
    "response_model": EmbeddingsResponse,
    "summary": "Embeddings of texts and sounds (OpenAI / TEI / infinity shape)",
}
embeddings.post("/embeddings", **_DOC)(_embeddings)  # type: ignore[arg-type]
embeddings_v1.post("/embeddings", **_DOC)(_embeddings)  # type: ignore[arg-type]


def clip_vector(windows: np.ndarray) -> np.ndarray:
    """One L2-normalised vector for a sound: the mean of its (n, dim) window embeddings, renormalised."""
    if len(windows) == 1:  # audio up to one window: exactly that window's vector
        one: np.ndarray = windows[0]
        return one
    mean = windows.astype(np.float64).mean(axis=0)
    out: np.ndarray = (mean / np.linalg.norm(mean)).astype(np.float32)
    return out


def _check_model(asked: str, served: str) -> None:
    if asked not in (served, served.rstrip("/").rsplit("/", 1)[-1]):
        raise ConfigError(f"model {asked!r} is not served here; this server serves {served!r}")


def _kind(item: str, modality: str | None) -> str:
    if modality == "text":
        return "text"
    if item.lower().startswith(_URL_SCHEMES):
        raise ConfigError("the server never fetches URLs; send the audio itself as a base64 data URL")
    if modality == "audio" or item.startswith("data:"):
        return "audio"
    return "text"


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    values: list[float] = vector.tolist()
    return values
