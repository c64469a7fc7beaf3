"""``POST /api/predict``: what clients of the original image sent keeps working.

The same call answers at ``/api/predict/``, ``/run/predict`` and ``/run/predict/``
(Gradio 3 clients use these), never with a redirect.

Two request shapes are accepted (documented in docs/server.md):

- multipart form: an audio file (field ``file`` or ``audio``) and comma-separated
  labels (field ``labels`` or ``candidate_labels``); the answer is a JSON object
  ``{label: confidence}``, best first.
- the Gradio 3 JSON call the original page answered: ``{"data": [audio, "labels"]}``
  with the audio as a base64 data URL (or ``{"name", "data"}``); the answer is
  ``{"data": [{"label", "confidences": [...]}], ...}`` as Gradio 3's Label gave.

Audio given as a URL is refused: the server never fetches what a client names.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import ConfigError
from ..types import Prediction
from .routes import ERROR_RESPONSES, engine_of
from .schemas import Gradio3Response
from .uploads import display_name, source_from_bytes, upload_source

__all__ = ["compat"]

compat = APIRouter(tags=["compatibility"], responses=ERROR_RESPONSES)

_OPENAPI_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "labels"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "Audio (or field `audio`).",
                        },
                        "labels": {
                            "type": "string",
                            "description": "Comma-separated (or `candidate_labels`).",
                        },
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "data": {"type": "array", "description": '["data:audio/wav;base64,...", "a, b"]'}
                    },
                }
            },
        }
    }
}


# Gradio 3 clients also call /run/predict, and some add a trailing slash: the same call, answered
# in place (a 307 redirect would make clients resend the upload, and many do not follow it for POST)
@compat.post("/api/predict/", include_in_schema=False)
@compat.post("/run/predict", include_in_schema=False)
@compat.post("/run/predict/", include_in_schema=False)
@compat.post(
    "/api/predict",
    openapi_extra=_OPENAPI_BODY,
    summary="Original image's predict call",
    response_model=dict[str, float] | Gradio3Response,
    response_description="Multipart: label -> confidence, best first. JSON: Gradio 3's Label shape.",
)
async def predict(request: Request) -> JSONResponse:
    """Label -> confidence for one audio file, in the original image's shapes."""
    engine = engine_of(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return await _gradio3(request, engine)
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ConfigError('send multipart/form-data (file + labels) or JSON {"data": [audio, labels]}')
    async with request.form() as form:
        upload = form.get("file") or form.get("audio")
        labels = form.get("labels") or form.get("candidate_labels")
        if upload is None or isinstance(upload, str):
            raise ConfigError("the audio file is missing: send it as form field 'file'")
        if not isinstance(labels, str):
            raise ConfigError("the labels are missing: send them comma-separated as form field 'labels'")
        async with upload_source(upload) as (data, name):
            prediction = await engine.classify(data, labels, engine.options(), name=name)
    return JSONResponse({s.label: s.probability for s in prediction.scores})


async def _gradio3(request: Request, engine: Any) -> JSONResponse:
    started = time.perf_counter()
    try:
        body = await request.json()
    except ValueError:
        raise ConfigError("the request body is not valid JSON") from None
    except RecursionError:  # {"data": [[[[...]]]]} nested thousands deep
        raise ConfigError("the request body nests too deeply to be a predict call") from None
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) < 2 or not isinstance(items[1], str):
        raise ConfigError('expected {"data": [audio, "label one, label two"]}')
    data, name = _audio_payload(items[0])
    prediction = await engine.classify(data, items[1], engine.options(), name=name)
    took = round(time.perf_counter() - started, 4)
    return JSONResponse(
        {
            "data": [_gradio_label(prediction)],
            "is_generating": False,
            "duration": took,
            "average_duration": took,
        }
    )


def _audio_payload(item: Any) -> tuple[bytes, str]:
    """Bytes of a Gradio 3 audio value: a data URL, or ``{"name", "data"}`` holding one."""
    name = "upload"
    if isinstance(item, dict):
        name = display_name(str(item.get("name") or item.get("orig_name") or ""))
        item = item.get("data")
    if not isinstance(item, str):
        raise ConfigError("the audio must be a base64 data URL (data:audio/wav;base64,...)")
    if item.split(":", 1)[0].lower() in ("http", "https", "ftp", "file", "rtsp", "s3"):
        raise ConfigError("the server never fetches URLs; send the audio itself as a base64 data URL")
    _, _, encoded = item.partition(";base64,") if item.startswith("data:") else ("", "", item)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("the audio is not valid base64") from None
    return source_from_bytes(data, name), name


def _gradio_label(prediction: Prediction) -> dict[str, Any]:
    return {
        "label": prediction.top.label,
        "confidences": [{"label": s.label, "confidence": s.probability} for s in prediction.scores],
    }
