"""``GET /api/v1/library/duplicates``: groups of library files that are the same recording.

Its router has the library routes' prefix, tag and errors (:mod:`.library_routes`). Reads only the database: fingerprints and embeddings stored by
``earmark tag``; nothing is decoded and no path from the client is opened. The
report is reused while the library's contents are unchanged
(:func:`earmark.library.duplicates.cached_duplicates`; paths are re-read).
"""

from __future__ import annotations

import time
from typing import Any, Literal

try:
    from fastapi import APIRouter, Query, Request
    from pydantic import BaseModel
except ImportError as ex:  # pragma: no cover - exercised only without the extra
    from ..errors import MissingExtraError

    raise MissingExtraError("the library API", "server") from ex

from ..library.duplicates import DuplicateOptions, cached_duplicates
from .library_routes import _db  # one answer for a server without --db
from .library_routes import router as _library

__all__ = ["DuplicatesResponse", "router"]

router = APIRouter(prefix=_library.prefix, tags=list(_library.tags), responses=dict(_library.responses))


class DuplicateFileOut(BaseModel):
    """One file of a group and what the keeper choice looked at."""

    file_id: int
    path: str
    duration_s: float | None
    format: str | None
    codec: str | None
    sample_rate: int | None
    channels: int | None
    size: int
    bitrate_kbps: float | None
    lossless: bool
    keeper: bool


class EvidenceOut(BaseModel):
    """Why files ``a`` and ``b`` are one recording."""

    a: int
    b: int
    kind: Literal["identical bytes", "fingerprint", "embedding"]
    similarity: float
    offset_s: float | None
    embedding_cosine: float | None


class DuplicateGroupOut(BaseModel):
    """Files that are the same recording; ``files[0]`` is the suggested keeper."""

    keeper: int
    files: list[DuplicateFileOut]
    evidence: list[EvidenceOut]


class DuplicatesResponse(BaseModel):
    """All groups (largest first) and how much of the library could be checked."""

    groups: list[DuplicateGroupOut]
    files: int
    fingerprinted: int
    without_fingerprint: int
    candidates: int
    fpcalc: bool
    took_ms: float


@router.get("/duplicates", response_model=DuplicatesResponse)
def duplicates(
    request: Request,
    min_similarity: float = Query(0.7, ge=0, le=1),
    min_embedding_similarity: float = Query(0.99, ge=0, le=1),
) -> dict[str, Any]:
    """Groups of files that are the same recording (Chromaprint fingerprints, CLAP embeddings for short sounds)."""
    t = time.perf_counter()
    options = DuplicateOptions(
        min_similarity=min_similarity, min_embedding_similarity=min_embedding_similarity
    )
    report = cached_duplicates(_db(request), options)
    return {**report.to_dict(), "took_ms": round((time.perf_counter() - t) * 1e3, 2)}


SAMPLE: dict[str, Any] = {  # an example response, for the API schema test and the docs
    "groups": [
        {
            "keeper": 1,
            "files": [
                {
                    "file_id": 1,
                    "path": "/sounds/rain.wav",
                    "duration_s": 6.0,
                    "format": "wav",
                    "codec": "pcm_s16le",
                    "sample_rate": 48000,
                    "channels": 1,
                    "size": 576078,
                    "bitrate_kbps": 768.1,
                    "lossless": True,
                    "keeper": True,
                },
                {
                    "file_id": 2,
                    "path": "/sounds/rain.mp3",
                    "duration_s": 6.03,
                    "format": "mp3",
                    "codec": "mp3float",
                    "sample_rate": 48000,
                    "channels": 1,
                    "size": 96813,
                    "bitrate_kbps": 128.4,
                    "lossless": False,
                    "keeper": False,
                },
            ],
            "evidence": [
                {
                    "a": 1,
                    "b": 2,
                    "kind": "fingerprint",
                    "similarity": 0.963,
                    "offset_s": 0.0,
                    "embedding_cosine": 0.998,
                }
            ],
        }
    ],
    "files": 2,
    "fingerprinted": 2,
    "without_fingerprint": 0,
    "candidates": 1,
    "fpcalc": True,
    "took_ms": 3.1,
}
