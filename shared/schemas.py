"""Pydantic schemas of the JSON API (input and output), kept apart from the ORM models."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every timestamp topicq writes is UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")


DEFAULT_OUTLIER_THRESHOLD = 0.3


def default_min_samples(min_topic_size: int) -> int:
    """HDBSCAN min_samples: a fifth of min_cluster_size, at least 2.

    HDBSCAN's own default (min_samples = min_cluster_size) with "eom" selection can swallow a corpus into one
    cluster: 2,000 Python-docs paragraphs at min_cluster_size 22 gave 2 topics, one holding 97% of the
    documents (NMI 0.03 against the chapters); min_samples 4-5 gave 25-28 topics (NMI 0.35-0.36).
    """
    return max(2, min_topic_size // 5)


def default_min_topic_size(n_documents: int, divisor: float = 3.0) -> int:
    """HDBSCAN min_cluster_size that grows with the corpus: about sqrt(n)/3, kept within [5, 500].

    2,000 documents give 15; 300 give 6; the recipe's 117k give 114 (it used 150). sqrt(n)/3 rather than
    sqrt(n)/2: finer topics agree better with the labels of both shared corpora (bench/quality.py), and the
    themes group them for reading.
    """
    return int(min(500, max(5, round(math.sqrt(n_documents) / divisor))))


class JobParams(BaseModel):
    """Parameters of one topic-modelling job."""

    model_config = ConfigDict(extra="forbid")

    min_topic_size: int | None = Field(
        None, ge=2, le=100_000, description="HDBSCAN min_cluster_size; null: grows with the corpus (sqrt(n)/3)."
    )
    min_samples: int | None = Field(
        None, ge=1, le=100_000, description="HDBSCAN min_samples; null: a fifth of the minimum topic size."
    )
    reduce_outliers: bool = Field(
        True, description="Give each outlier to its nearest topic when their embeddings are close enough."
    )
    outlier_threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="Least cosine similarity to a topic's centroid for an outlier to join it; "
        "null: the default."
    )
    nr_topics: Literal["auto"] | Annotated[int, Field(ge=2, le=10_000)] | None = Field(
        None, description='Merge topics down to this many after clustering; "auto" lets BERTopic decide; null: keep.'
    )
    generate_labels: bool = Field(True, description="Ask the LLM for a short label per topic.")

    @field_validator("nr_topics", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value in ("", "none", "null"):
                return None
            if value.isdigit():
                return int(value)
        return value


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str
    title: str | None = None


class JobCreate(BaseModel):
    """Body of ``POST /api/v1/jobs``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    documents: list[str | DocumentIn]
    params: JobParams = Field(default_factory=JobParams)


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    status: JobStatus
    stage: str
    progress: float
    error: str | None
    n_documents: int
    n_topics: int | None
    n_outliers: int | None
    scores: dict[str, Any] | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    params: dict[str, Any]


class TopicPublic(BaseModel):
    topic: int
    size: int
    label: str
    label_source: Literal["llm", "keywords"]
    keywords: list[str]
    representations: dict[str, list[str]]
    representative_docs: list[str]
    representative_doc_indices: list[int]
    theme: int | None


class ThemePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    theme: int
    label: str
    label_source: Literal["llm", "keywords"]
    topics: list[int]
    size: int


class ThemesPublic(BaseModel):
    themes: list[ThemePublic]


class TopicsPublic(BaseModel):
    topics: list[TopicPublic]
    n_outliers: int


class DocumentResult(BaseModel):
    index: int
    topic: int
    original_topic: int  # before outlier reduction (-1: HDBSCAN left it out)
    x: float
    y: float


class DocumentsPublic(BaseModel):
    documents: list[DocumentResult]
    total: int


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorPublic(BaseModel):
    error: ErrorBody


class RelabelCreate(BaseModel):
    """Body of ``POST /api/v1/jobs/{id}/labels``: an optional custom main prompt with [DOCUMENTS]/[KEYWORDS]."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, max_length=4000)


class LabelRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    prompt: str | None
    progress: float
    error: str | None
    labels: dict[str, dict[str, str]] | None
    previous_labels: dict[str, dict[str, str]] | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None

