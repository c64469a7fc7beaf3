"""Response shapes of the REST API (for the OpenAPI docs at /docs and for clients)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AUDIO_CONTENT",
    "ClassifyResponse",
    "Confidence",
    "DecisionResponse",
    "EmbedResponse",
    "EmbeddingObject",
    "EmbeddingsResponse",
    "EmbeddingsUsage",
    "ErrorBody",
    "ErrorResponse",
    "Event",
    "EventsResponse",
    "Gradio3Label",
    "Gradio3Response",
    "LabelScore",
    "LibraryFile",
    "LibraryHit",
    "LibrarySearchResponse",
    "LibrarySimilarResponse",
    "LiveResponse",
    "PackInfo",
    "PacksResponse",
    "ReadyResponse",
    "ReviewQueueResponse",
    "ScoreRow",
    "SegmentRow",
    "TopScore",
    "WindowRow",
]


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `upload_too_large`, `server_busy`.")
    message: str = Field(description="What went wrong and what to do, for people.")


class ErrorResponse(BaseModel):
    error: ErrorBody


class TopScore(BaseModel):
    label: str
    probability: float


class ScoreRow(BaseModel):
    label: str
    probability: float
    cosine: float


class SegmentRow(BaseModel):
    label: str
    start_s: float
    end_s: float
    score: float


class WindowRow(BaseModel):
    start_s: float
    end_s: float
    probabilities: list[float] = Field(description="In the order of `labels`.")
    cosines: list[float]


class ClassifyResponse(BaseModel):
    source: str = Field(description="The uploaded file's name.")
    model: str
    duration_s: float
    sample_rate: int
    labels: list[str] = Field(description="Candidate labels, cleaned, in the order given.")
    label: str | None = Field(
        description="The answer, or null when uncertain (top probability below threshold)."
    )
    top: TopScore
    uncertain: bool
    threshold: float
    top_k: list[ScoreRow] = Field(description="The best `top_k` labels, best first.")
    scores: dict[str, float] = Field(description="Every label's probability, best first.")
    cosines: dict[str, float] = Field(description="Every label's raw cosine similarity.")
    timeline: list[SegmentRow] = Field(description="Stretches where a label is heard above threshold.")
    windows: list[WindowRow] | None = Field(
        default=None, description="Per-window scores when `windows=true`."
    )
    pack: str | None = Field(
        default=None,
        description="The classifier pack that scored, when `pack` was given; absent for zero-shot.",
    )
    warnings: list[str] = Field(default_factory=list)


class PackInfo(BaseModel):
    name: str = Field(description="What to send as `pack` when classifying.")
    labels: list[str] = Field(description="The classes the pack scores, in its order.")
    model: str = Field(description="The model it was fitted on (the server checked it is the one loaded).")
    digest: str = Field(description="Identity of what the pack computes (labels, head, thresholds).")
    examples: dict[str, int] = Field(description="Training examples per class.")
    cv_accuracy: float | None = Field(
        description="Cross-validated accuracy on its training data, if recorded."
    )
    label_thresholds: dict[str, float] = Field(description="Calibrated per-label thresholds (may be empty).")
    training: dict[str, Any] = Field(
        description="Training summary: method, folds, macro-F1, zero-shot "
        "accuracy on the same data, when fitted."
    )


class PacksResponse(BaseModel):
    packs: list[PackInfo] = Field(description="The classifier packs this server serves, by name.")


class EmbedResponse(BaseModel):
    model: str
    kind: str = Field(description="`audio` or `text`.")
    dim: int
    vectors: list[list[float]] = Field(description="L2-normalised; one per audio window or per text.")
    texts: list[str] | None = None
    source: str | None = None
    duration_s: float | None = None
    spans_s: list[list[float]] | None = Field(default=None, description="(start, end) of each audio window.")


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(description="Position of the input this vector belongs to.")
    embedding: list[float] | str = Field(
        description="L2-normalised vector; with `encoding_format=base64`, little-endian float32 bytes "
        "in base64."
    )


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = Field(description="Characters of the text inputs (audio counts nothing).")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject] = Field(description="One per input, in input order.")
    model: str
    usage: EmbeddingsUsage


# -- health ---------------------------------------------------------------------------------------


class LiveResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ready", "starting", "draining"]
    model: str | None = Field(None, description="The loaded model, once ready.")
    waiting_for: str | None = Field(None, description="While starting: what it waits for.")
    attempt: int | None = Field(None, description="While starting: the warm-up attempt.")
    last_error: str | None = Field(None, description="Why the last warm-up attempt failed.")
    retry_in_s: float | None = Field(None, description="Seconds until the next warm-up attempt.")


# -- POST /api/predict (the original image's shapes) -----------------------------------------------


class Confidence(BaseModel):
    label: str
    confidence: float


class Gradio3Label(BaseModel):
    label: str
    confidences: list[Confidence] = Field(description="Best first.")


class Gradio3Response(BaseModel):
    data: list[Gradio3Label]
    is_generating: bool
    duration: float
    average_duration: float


# -- library ---------------------------------------------------------------------------------------


class LibraryHit(BaseModel):
    file_id: int
    path: str = Field(description="Where the file lies on the server's disk.")
    score: float = Field(description="Cosine similarity of the file's best window.")
    start_s: float
    end_s: float
    top_label: str | None
    status: str | None


class LibrarySearchResponse(BaseModel):
    query: str
    results: list[LibraryHit] = Field(description="Best first.")
    took_ms: float


class LibrarySimilarResponse(BaseModel):
    file_id: int
    results: list[LibraryHit] = Field(description="Best first.")
    took_ms: float


class LabelScore(BaseModel):
    label: str
    probability: float


class LibraryFile(BaseModel):
    file_id: int
    path: str
    duration_s: float | None
    top: list[LabelScore] = Field(description="The best scores, best first.")
    labels: list[str] = Field(description="The label choices.")
    review_label: str | None = Field(description="The label a review decided, if any.")


class ReviewQueueResponse(BaseModel):
    count: int
    items: list[LibraryFile]


class DecisionResponse(BaseModel):
    file_id: int
    decision: Literal["accept", "relabel", "skip"]
    label: str | None = Field(description="The label the file will be filed under (none for skip).")


# -- monitor events --------------------------------------------------------------------------------


class Event(BaseModel):
    """One monitor event; newer servers may add fields."""

    model_config = ConfigDict(extra="allow")

    id: str
    source: str
    rule: str
    label: str
    status: Literal["open", "closed"]
    start_s: float = Field(description="Stream seconds.")
    end_s: float | None
    started_at: str = Field(description="ISO 8601, UTC.")
    ended_at: str | None
    peak: float
    windows: int
    closed_by: str | None
    model: str | None
    clip: str | None = Field(description="The clip's file name (never its server path).")
    clip_url: str | None = Field(description="Where to fetch the clip, if the event has one.")


class EventsResponse(BaseModel):
    events: list[Event] = Field(description="Newest first.")


AUDIO_CONTENT = {"audio/*": {"schema": {"type": "string", "format": "binary"}}}
