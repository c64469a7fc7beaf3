"""REST routes: thin functions on module-level routers; the engine does the work.

Routes read uploads, call :class:`~earmark.server.engine.ServingEngine` and
shape JSON. Errors are raised as :class:`~earmark.errors.EarmarkError` and
translated once by the app's handler (:mod:`earmark.server.api`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..errors import ConfigError, LabelError
from ..labels import MAX_LABEL_CHARS, MAX_LABELS
from ..types import Prediction
from .errors import ServerBusy
from .i18n import foreign_script_labels, t
from .schemas import (
    ClassifyResponse,
    EmbedResponse,
    ErrorResponse,
    LiveResponse,
    PacksResponse,
    ReadyResponse,
)
from .served_packs import pack_summary, pick_pack
from .uploads import upload_source

__all__ = ["ERROR_RESPONSES", "check_texts", "engine_of", "error_responses", "health", "v1"]

ERROR_TEXT = {
    401: "An API key is set and the request lacks it (`Authorization: Bearer KEY`).",
    404: "No such library file, event or clip.",
    413: "Upload over `max_upload_mb` (checked before the body is read).",
    415: "The upload is plainly not audio (an image, a document...).",
    422: "Bad labels or options, or audio that cannot be decoded.",
    429: "The queue is full; retry after the `Retry-After` seconds.",
    500: "An unexpected failure: a reference to the server log, never details.",
    503: "Not available on this server now (no database configured, model still loading).",
    504: "Decoding or the whole request ran past its deadline.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these error statuses with the one error shape."""
    return {code: {"model": ErrorResponse, "description": ERROR_TEXT[code]} for code in statuses}


_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
ERROR_RESPONSES = error_responses(401, 413, 415, 422, 429, 500, 504)

health = APIRouter(tags=["health"])
v1 = APIRouter(prefix="/api/v1", tags=["api"], responses=ERROR_RESPONSES)


@health.get("/livez", summary="The process is up", response_model=LiveResponse)
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@health.get(
    "/readyz",
    summary="Ready for requests: model loaded and warm, not draining",
    response_model=ReadyResponse,
    response_model_exclude_none=True,
    responses={
        503: {"model": ReadyResponse, "description": "Starting (with what it waits for) or draining."}
    },
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    if state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if not state.ready:
        return JSONResponse({"status": "starting", **(state.warmup or {})}, status_code=503)
    return JSONResponse({"status": "ready", "model": state.classifier.model_id})


@health.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."},
        # JSON errors on a text route: named by reference (a `model` would be filed under text/plain)
        **{
            code: {"description": ERROR_TEXT[code], "content": {"application/json": {"schema": _ERROR_REF}}}
            for code in (401, 500)
        },
    },
)
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@v1.post("/classify", response_model=ClassifyResponse, response_model_exclude_unset=True)
async def classify(
    request: Request,
    file: Annotated[
        UploadFile, File(description="The audio file (wav, mp3, ogg, flac, opus, m4a, webm...).")
    ],
    labels: Annotated[
        str | None,
        Form(
            description="Candidate labels, separated by commas or new lines (2 to 1000). "
            "With `pack`: leave out, or exactly the pack's labels."
        ),
    ] = None,
    pack: Annotated[
        str | None,
        Form(
            description="Name of a classifier pack this server serves (see "
            "`GET /api/v1/packs`): its trained head scores its own labels."
        ),
    ] = None,
    threshold: Annotated[
        float | None, Form(ge=0, le=1, description="Below it the answer is uncertain.")
    ] = None,
    top_k: Annotated[int | None, Form(ge=1, description="How many best labels `top_k` holds.")] = None,
    template: Annotated[list[str] | None, Form(description="Prompt template(s) with {label}.")] = None,
    window_s: Annotated[float | None, Form(gt=0, le=10, description="Window length in seconds.")] = None,
    hop_s: Annotated[float | None, Form(gt=0, description="Step between windows of long audio.")] = None,
    aggregate: Annotated[Literal["mean", "max"] | None, Form(description="Clip score from windows.")] = None,
    windows: Annotated[bool, Form(description="Include per-window scores.")] = False,
) -> dict[str, Any]:
    """Classify one audio file against free-text labels, or with a served classifier pack."""
    engine = engine_of(request)
    packs = request.app.state.packs
    chosen = pick_pack(packs, pack)
    labels = labels if labels and labels.strip() else None  # an empty form field is a field left out
    if chosen is None and labels is None:
        hint = f", or name a classifier pack as `pack` ({', '.join(sorted(packs))})" if packs else ""
        raise LabelError(f"no labels given: send the candidate labels as `labels`{hint}")
    opts = engine.options(
        threshold=threshold,
        top_k=top_k,
        templates=tuple(template) if template else None,
        window_s=window_s,
        hop_s=hop_s,
        aggregate=aggregate,
    )
    async with upload_source(file) as (data, name):
        prediction = await engine.classify(data, labels, opts, name=name, pack=chosen)
    out = prediction_json(prediction, windows=windows)
    if chosen is not None and pack is not None:
        out["pack"] = pack.strip()
    return out


@v1.get("/packs", response_model=PacksResponse)
async def list_packs(request: Request) -> dict[str, Any]:
    """The classifier packs this server serves; name one as `pack` when classifying."""
    served = request.app.state.packs
    return {"packs": [pack_summary(name, p) for name, p in sorted(served.items())]}


@v1.post("/embed", response_model=EmbedResponse, response_model_exclude_unset=True)
async def embed(
    request: Request,
    file: Annotated[UploadFile | None, File(description="An audio file: one vector per window.")] = None,
    texts: Annotated[list[str] | None, Form(description="Texts (repeat the field): one vector each.")] = None,
    template: Annotated[str | None, Form(description="Embed texts as labels through this template.")] = None,
    window_s: Annotated[float | None, Form(gt=0, le=10)] = None,
    hop_s: Annotated[float | None, Form(gt=0)] = None,
) -> dict[str, Any]:
    """L2-normalised CLAP embeddings of an audio file or of texts (send one or the other)."""
    engine = engine_of(request)
    model = engine.classifier.model_id
    if (file is None) == (not texts):
        raise ConfigError("send either an audio file (file) or texts (texts), not both or neither")
    if texts:
        check_texts(texts)
        vectors = await engine.embed_texts(texts, (template,) if template else None)
        return {
            "model": model,
            "kind": "text",
            "dim": int(vectors.shape[1]),
            "texts": texts,
            "vectors": vectors.tolist(),
        }
    assert file is not None
    opts = engine.options(window_s=window_s, hop_s=hop_s)
    async with upload_source(file) as (data, name):
        emb = await engine.embed_upload(data, opts, name=name)
    return {
        "model": model,
        "kind": "audio",
        "dim": int(emb.vectors.shape[1]),
        "source": emb.source,
        "duration_s": round(emb.duration_s, 3),
        "spans_s": [list(s) for s in emb.spans_s],
        "vectors": emb.vectors.tolist(),
    }


def engine_of(request: Request) -> Any:
    """The app's serving engine; 429 while the app is still starting it."""
    engine = request.app.state.engine
    if engine is None:
        raise ServerBusy(1)
    return engine


def check_texts(texts: list[str]) -> None:
    if len(texts) > MAX_LABELS:
        raise LabelError(f"{len(texts)} texts given; at most {MAX_LABELS} are supported")
    for text in texts:
        if not text.strip() or len(text) > MAX_LABEL_CHARS:
            raise LabelError(f"each text must be 1 to {MAX_LABEL_CHARS} characters")


def prediction_json(prediction: Prediction, *, windows: bool = False) -> dict[str, Any]:
    """The API's answer: ``Prediction.to_dict()`` plus plain-language warnings."""
    out = prediction.to_dict(windows=windows)
    foreign = foreign_script_labels(prediction.labels)
    out["warnings"] = [t("warn_script", "en", labels=", ".join(foreign))] if foreign else []
    return out
