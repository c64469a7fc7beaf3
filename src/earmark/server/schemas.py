"""Response shapes of the REST API (for the OpenAPI docs at /docs and for clients)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "ClassifyResponse",
    "EmbedResponse",
    "EmbeddingObject",
    "EmbeddingsResponse",
    "EmbeddingsUsage",
    "ErrorBody",
    "ErrorResponse",
    "PackInfo",
    "PacksResponse",
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
