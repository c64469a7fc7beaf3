"""Library REST endpoints (``/api/v1/library``) and the web page's Library tab.

The routes read ``request.app.state.db`` (an :class:`earmark.store.Database`)
and ``request.app.state.classifier``; the app factory sets both and includes
``router``. Handlers are plain ``def``: FastAPI runs them in its thread pool,
so a search never blocks the event loop. Paths come only from the database:
nothing here opens a path or URL a client sends.
"""

from __future__ import annotations

import time
from typing import Any, Literal

try:
    from fastapi import APIRouter, Query, Request
    from fastapi.responses import FileResponse
    from pydantic import BaseModel, Field
except ImportError as ex:  # pragma: no cover - exercised only without the extra
    from ..errors import MissingExtraError

    raise MissingExtraError("the library API", "server") from ex

from ..errors import ConfigError
from ..library.review import decide, review_item, review_queue
from ..library.search import search_text, similar_to
from .errors import NotFound, Unavailable
from .routes import error_responses
from .schemas import (
    AUDIO_CONTENT,
    DecisionResponse,
    LibraryFile,
    LibrarySearchResponse,
    LibrarySimilarResponse,
    ReviewQueueResponse,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/library", tags=["library"], responses=error_responses(401, 422, 500, 503))
_404 = error_responses(404)


class Decision(BaseModel):
    """A review decision: ``accept`` the top label, ``relabel`` to ``label``, or ``skip``."""

    decision: Literal["accept", "relabel", "skip"]
    label: str | None = Field(default=None, max_length=200)


def _db(request: Request) -> Any:
    db = getattr(request.app.state, "db", None)
    if db is None:
        raise Unavailable("no library database is configured on this server (earmark serve --db)")
    return db


def _classifier(request: Request) -> Any:
    clf = getattr(request.app.state, "classifier", None)
    if clf is None:
        raise Unavailable("the model is still loading; try again in a moment")
    return clf


@router.get("/search", response_model=LibrarySearchResponse)
def search(
    request: Request, q: str = Query(..., max_length=500), k: int = Query(20, ge=1, le=500)
) -> dict[str, Any]:
    """Files whose best window matches the text ``q``, best first."""
    t = time.perf_counter()
    hits = search_text(_db(request), _classifier(request), q, k=k)  # ConfigError: 422
    return {
        "query": q,
        "results": [h.to_dict() for h in hits],
        "took_ms": round((time.perf_counter() - t) * 1e3, 2),
    }


@router.get("/similar/{file_id}", response_model=LibrarySimilarResponse, responses=_404)
def similar(request: Request, file_id: int, k: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
    """Files that sound like library file ``file_id``, best first."""
    t = time.perf_counter()
    try:
        hits = similar_to(_db(request), _classifier(request), file_id, k=k)
    except ConfigError:  # its message names the database's path: not for clients
        raise NotFound(
            f"file {file_id} is not in the library or has no embedding for the served model"
        ) from None
    return {
        "file_id": file_id,
        "results": [h.to_dict() for h in hits],
        "took_ms": round((time.perf_counter() - t) * 1e3, 2),
    }


@router.get("/review", response_model=ReviewQueueResponse)
def review_list(request: Request, limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    """Files waiting for a review decision (top-3 scores and the label choices)."""
    items = review_queue(_db(request), limit=limit)
    return {"count": len(items), "items": [i.to_dict() for i in items]}


@router.post("/review/{file_id}", response_model=DecisionResponse, responses=_404)
def review_decide(request: Request, file_id: int, body: Decision) -> dict[str, Any]:
    """Store a decision; ``earmark review --apply-only`` (or the next tag run) files it."""
    db = _db(request)
    if review_item(db, file_id) is None:
        raise NotFound(f"no file with id {file_id}")
    label = decide(db, file_id, body.decision, label=body.label, via="api")  # ConfigError: 422
    return {"file_id": file_id, "decision": body.decision, "label": label}


@router.get("/files/{file_id}", response_model=LibraryFile, responses=_404)
def file_info(request: Request, file_id: int) -> dict[str, Any]:
    """A library file's scores and status."""
    item = review_item(_db(request), file_id)
    if item is None:
        raise NotFound(f"no file with id {file_id}")
    return item.to_dict()


@router.get(
    "/files/{file_id}/audio",
    response_class=FileResponse,
    responses={200: {"content": AUDIO_CONTENT, "description": "The file's bytes."}, **_404},
)
def file_audio(request: Request, file_id: int) -> Any:
    """The file's bytes, for playing in the page: only the regular file that was tagged (see ``safe_files``)."""
    from .safe_files import NotServed, tagged_file_response

    db = _db(request)
    item = review_item(db, file_id)
    if item is None:
        raise NotFound(f"file {file_id} is not in the library")
    row = db.conn.execute("SELECT size, content_hash FROM lib_files WHERE id=?", (file_id,)).fetchone()
    try:
        return tagged_file_response(item.path, size=row["size"], content_hash=row["content_hash"])
    except NotServed as ex:
        raise NotFound(f"file {file_id} cannot be played: {ex}") from None
