"""Monitor events on the web: REST under ``/api/v1/events`` (the page's Events tab is in :mod:`.events_tab`).

The router reads ``request.app.state.db`` (an :class:`earmark.store.Database`).
Clips are served by event id only: the file is the one the event log recorded,
never a path from the request, so nothing outside the clips can be reached.
If ``app.state.clips_dir`` is set, a clip must also lie inside it.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from ..monitor.clips import CLIP_FORMATS
from ..monitor.events import EventLog, parse_since, public_event
from .errors import NotFound, Unavailable
from .routes import error_responses
from .schemas import AUDIO_CONTENT, Event, EventsResponse

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=error_responses(401, 422, 500, 503))
_404 = error_responses(404)

EVENT_ID = r"^[A-Za-z0-9_-]{1,64}$"
_MEDIA = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
}


def _events(request: Request) -> EventLog:
    state = request.app.state
    if getattr(state, "db", None) is None:
        raise Unavailable("no event database is configured on this server (earmark serve --db)")
    log = getattr(state, "event_log", None)
    if log is None or log.db is not state.db:
        log = state.event_log = EventLog(state.db)  # creates the tables on first use
    return log


def _with_url(row: dict[str, Any]) -> dict[str, Any]:
    out = public_event(row)
    out["clip_url"] = f"{router.prefix}/{row['id']}/clip" if row.get("clip_path") else None
    return out


@router.get("", response_model=EventsResponse)
def list_events(
    request: Request,
    since: str | None = Query(None, description="30m, 12h, 7d or an ISO time"),
    label: str | None = None,
    source: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Events, newest first."""
    since_iso = parse_since(since)  # ConfigError: 422
    rows = _events(request).list_events(since=since_iso, label=label, source=source, limit=limit)
    return {"events": [_with_url(r) for r in rows]}


@router.get("/{event_id}", response_model=Event, responses=_404)
def get_event(request: Request, event_id: str = PathParam(..., pattern=EVENT_ID)) -> dict[str, Any]:
    """One event."""
    row = _events(request).get(event_id)
    if row is None:
        raise NotFound("no such event")
    return _with_url(row)


@router.get(
    "/{event_id}/clip",
    response_class=FileResponse,
    responses={200: {"content": AUDIO_CONTENT, "description": "The clip's bytes."}, **_404},
)
def get_clip(request: Request, event_id: str = PathParam(..., pattern=EVENT_ID)) -> FileResponse:
    """The event's audio clip."""
    row = _events(request).get(event_id)
    path = _clip_path(row, getattr(request.app.state, "clips_dir", None))
    if path is None:
        raise NotFound("this event has no clip")
    fmt = path.suffix.lstrip(".")
    return FileResponse(
        path,
        media_type=_MEDIA.get(fmt) or mimetypes.guess_type(path.name)[0] or "audio/*",
        filename=path.name,
    )


def _clip_path(row: dict[str, Any] | None, clips_dir: str | Path | None) -> Path | None:
    if row is None or not row.get("clip_path"):
        return None
    path = Path(row["clip_path"]).resolve()
    if path.suffix.lstrip(".") not in CLIP_FORMATS or not path.is_file():
        return None
    if clips_dir is not None and not path.is_relative_to(Path(clips_dir).resolve()):
        return None
    return path
