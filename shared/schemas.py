"""Pydantic schemas of the JSON API (input and output), kept apart from the ORM models."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every timestamp topicq writes is UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")
MAX_ID = 2**31 - 1  # topic ids and document indices are 32-bit integers in the database
Priority = Annotated[int, Field(ge=-10, le=10, description="Higher runs first: a job's ready stages are taken before "
                                "those of lower-priority jobs; equal priorities go in the order they became ready.")]


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


# A language's name: words of letters (any script), joined by single spaces, hyphens or apostrophes.
LANGUAGE_NAME = r"^[^\W\d_]+(?:[ '\-][^\W\d_]+)*$"
LanguageName = Annotated[str, Field(min_length=2, max_length=40, pattern=LANGUAGE_NAME)]


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
    max_outlier_share: float | None = Field(
        None, ge=0.0, lt=1.0, allow_inf_nan=False,
        description="Most outliers wanted, as a share of the documents (0.05: 5%): the outlier threshold is lowered "
        "from its default until at most this share is left (0: every outlier joins its nearest topic). Needs "
        "reduce_outliers; not with outlier_threshold. null: the threshold alone decides.",
    )
    nr_topics: Literal["auto"] | Annotated[int, Field(ge=2, le=10_000)] | None = Field(
        None, description='Merge topics down to this many after clustering; "auto" lets BERTopic decide; null: keep.'
    )
    generate_labels: bool = Field(True, description="Ask the LLM for a short label per topic.")
    label_language: LanguageName | None = Field(
        None,
        description="The language to write topic and theme labels in, by its name ('French', 'Deutsch', "
        "'Español'), whatever the documents' language; null: the LLM's choice (usually the documents'). "
        "Labels made from keywords, when the LLM gives nothing usable, stay in the documents' words.",
    )

    @model_validator(mode="after")
    def _one_outlier_rule(self) -> JobParams:
        # A target sets the threshold itself: a threshold given with it, or reduction turned off, contradicts it.
        if self.max_outlier_share is not None and self.outlier_threshold is not None:
            raise PydanticCustomError("conflicting_params", "give max_outlier_share or outlier_threshold, not both: "
                                      "the target sets the threshold")
        if self.max_outlier_share is not None and not self.reduce_outliers:
            raise PydanticCustomError("conflicting_params", "max_outlier_share needs reduce_outliers: outliers reach "
                                      "the target only by joining their nearest topic")
        return self

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

    @field_validator("label_language", mode="before")
    @classmethod
    def _blank_language_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = " ".join(value.split())
            return value or None
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
    priority: Priority = 0


class AssignCreate(BaseModel):
    """Body of ``POST /api/v1/jobs/<id>/assign``: new documents to put into the job's topics."""

    model_config = ConfigDict(extra="forbid")

    documents: list[str | DocumentIn] = Field(min_length=1)

    def texts(self) -> list[str]:
        texts = [d if isinstance(d, str) else d.text for d in self.documents]
        if any(not t.strip() for t in texts):
            raise ValueError("documents must not be empty")
        return texts


class AssignedDocument(BaseModel):
    topic: int  # -1: closest to the job's outliers
    label: str  # the topic's label as shown, empty for -1
    similarity: float  # cosine between the document's embedding and the topic's


class AssignmentPublic(BaseModel):
    id: str
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    error: str | None
    assignments: list[AssignedDocument] | None  # in the order of the documents, once succeeded
    created_at: UtcDatetime
    finished_at: UtcDatetime | None


class FormOptions(BaseModel):
    """Fields of a form submission (the HTML form, a multipart request) besides its documents and params."""

    model_config = ConfigDict(extra="ignore")

    priority: Priority = 0


def _without_null_defaults(schema: dict[str, Any]) -> None:
    # A form field left out takes its default; "default": null would tell a client to send a value it cannot.
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class JobUpload(BaseModel):
    """The multipart form of ``POST /api/v1/jobs``: a corpus file and the job's settings as form fields (each
    optional; blank takes the default). ``web.submit`` reads the form; this model describes it in the OpenAPI
    document."""

    model_config = ConfigDict(json_schema_extra=_without_null_defaults)

    file: bytes = Field(description="The corpus: .txt (one document per line), .csv (with a header) or .jsonl "
                        '(one object per line with "text" and an optional "title"), UTF-8.')
    name: Annotated[str, Field(max_length=200)] | SkipJsonSchema[None] = Field(
        None, description="Default: the file's name."
    )
    min_topic_size: Annotated[int, Field(ge=2, le=100_000)] | SkipJsonSchema[None] = None
    min_samples: Annotated[int, Field(ge=1, le=100_000)] | SkipJsonSchema[None] = None
    nr_topics: Literal["auto"] | Annotated[int, Field(ge=2, le=10_000)] | SkipJsonSchema[None] = None
    generate_labels: bool | SkipJsonSchema[None] = None
    max_outlier_share: Annotated[float, Field(ge=0.0, lt=1.0)] | SkipJsonSchema[None] = Field(
        None, description="Most outliers wanted, as a share of the documents (JSON params: max_outlier_share)."
    )
    label_language: LanguageName | SkipJsonSchema[None] = Field(
        None, description="The language to write the labels in, by its name (JSON params: label_language)."
    )
    priority: Priority = 0
    params: JobParams | SkipJsonSchema[None] = Field(
        None, description="Instead of the parameter fields above: the object `params` of a JSON submission, as JSON."
    )
    text_column: str | SkipJsonSchema[None] = Field(None, description="CSV: the column holding the text.")
    title_column: str | SkipJsonSchema[None] = Field(None, description="CSV: the column holding the title.")


class StagePublic(BaseModel):
    """One stage a job has reached (``shared.work.stage_times``)."""

    model_config = ConfigDict(from_attributes=True)

    stage: str  # embed, cluster, label, save
    status: Literal["waiting", "running", "done"]
    chunks_done: int
    chunks: int  # known so far: later chunks appear as earlier ones finish
    seconds: float  # summed over its finished chunks
    worker: str | None  # the worker on it now, else the last one that ran it


class LabellingPublic(BaseModel):
    """A job's labelling ahead (``shared.label_estimate``): from when clustering is done until its last label."""

    model_config = ConfigDict(from_attributes=True)

    topics: int  # topics its label stage labels
    themes: int  # and themes
    domains: int = 0  # and domains
    labels_left: int  # of all three, not made yet (counted by its finished label items: a chunk of topics at a time)
    seconds_per_label: float | None  # over the newest finished label work of this service; null: none timed yet
    measured_labels: int  # labels that figure comes from
    expected_seconds: float | None  # labels_left x seconds_per_label; null while no label was timed
    summary: str  # the same in words, as the job page shows it


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
    priority: int
    attempts: int  # workers that died while running it
    # Not columns of the row: ``web.api.job_public`` fills them from the job's work items.
    worker: str | None = None  # the worker on its running stage, if one is
    stages: list[StagePublic] = []
    labelling: LabellingPublic | None = None  # once clustered, until labelled: what is left and how long it takes


class JobsPublic(BaseModel):
    """``GET /api/v1/jobs``: a page of jobs, newest first, and how many there are in all."""

    jobs: list[JobPublic]
    total: int


class WorkerPublic(BaseModel):
    """A worker's published state (``shared.queue.worker_states``); fields a starting worker has not set yet are
    null or empty."""

    model_config = ConfigDict(extra="ignore")

    hostname: str
    ready: bool = False
    status: str | None = None  # starting, loading models, ready, busy
    queues: list[str] = []  # work kinds it takes: gpu, cpu
    device: str | None = None  # cpu, cuda
    models: list[str] = []  # the models it has loaded
    labels: dict[str, Any] | None = None  # its labeller (backend, device, dtype, reason); accelerator workers only
    embeddings: str | None = None  # its embedding backend
    memory_bytes: int | None = Field(None, validation_alias="rss_bytes")  # resident memory of its process
    job: str | None = None  # the job it is working on
    stage: str | None = None  # and that job's stage
    seen_at: UtcDatetime  # its last report


class WorkersPublic(BaseModel):
    workers: list[WorkerPublic]


POOR_FAITHFULNESS = 0.5  # a topic whose label picks out less of its documents is flagged and asked again


class TopicPublic(BaseModel):
    topic: int
    size: int
    label: str  # what every page and export shows: a user's rename, else the generated label
    label_source: Literal["llm", "keywords", "custom"]
    generated_label: str  # the LLM's label (or the keywords' fallback), kept beside a rename
    generated_label_source: Literal["llm", "keywords"]
    keywords: list[str]
    keyword_weights: list[float]  # c-TF-IDF weight of each keyword (empty for jobs finished before they were kept)
    representations: dict[str, list[str]]
    representative_docs: list[str]
    representative_doc_indices: list[int]
    theme: int | None
    # Share of the topic's (sampled: at most 300, fewer past 333 topics) documents whose most similar label, among all the job's labels,
    # is its own: how well the generated label picks out its documents (chance: 1 / the number of topics).
    # None when not scored: keyword labels, a job finished before scores were kept, or relabelled or merged since.
    faithfulness: float | None = None


class ThemePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    theme: int
    label: str
    label_source: Literal["llm", "keywords"]
    topics: list[int]
    size: int
    domain: int | None = None  # the domain it belongs to; None when the job has no domains (under 8 themes)


class DomainPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    domain: int
    label: str
    label_source: Literal["llm", "keywords"]
    themes: list[int]  # theme ids, largest first
    size: int  # documents in its themes


class ThemesPublic(BaseModel):
    themes: list[ThemePublic]
    domains: list[DomainPublic] = []  # the level above the themes; empty under 8 themes


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class LabelerPublic(BaseModel):
    backend: str  # the labeller's class, e.g. LlamaCppLabeler or TransformersLabeler
    model: str
    settings: dict[str, Any]  # generation settings (max_new_tokens, decoding) and the prompt's doc_tokens, doc_count


class LabelAttempt(BaseModel):
    reason: Literal["label taken", "unfaithful"]  # asked again: another topic had the label, or it scored poorly
    messages: list[ChatMessage]
    answer: str  # the raw answer
    kept: bool  # whether its label replaced the one before


class ProvenancePublic(BaseModel):
    """The prompts sent and raw answers received behind a generated label (replaying ``messages`` through the
    same model and settings gives ``answer``: decoding is greedy)."""

    labeler: LabelerPublic
    messages: list[ChatMessage]
    answer: str
    retries: list[LabelAttempt]


class LabelProvenance(BaseModel):
    topic: int | None = None  # a topic's, or
    theme: int | None = None  # a theme's, or
    domain: int | None = None  # a domain's
    label: str  # the generated label (a user's rename is not generated)
    label_source: Literal["llm", "keywords"]
    provenance: ProvenancePublic | None  # None: keyword labels, or a job finished before provenance was kept


class ProvenanceExport(BaseModel):
    topics: list[LabelProvenance]
    themes: list[LabelProvenance]
    domains: list[LabelProvenance] = []


class TopicsPublic(BaseModel):
    topics: list[TopicPublic]
    n_outliers: int


class TopicRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(description="the new label; null or blank goes back to the generated one")


class DocumentMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: int = Field(ge=-1, le=MAX_ID, description="the topic to move the document to; -1 makes it an outlier")


class DocumentResult(BaseModel):
    index: int
    topic: int
    original_topic: int  # before outlier reduction (-1: HDBSCAN left it out)
    x: float
    y: float


class DocumentsPublic(BaseModel):
    """``GET /api/v1/jobs/{id}/documents``: a page of the documents' results, in submission order."""

    documents: list[DocumentResult]
    total: int
    next: int | None = Field(description="Pass as `after` for the next page; null on the last page.")


class TopicDocument(BaseModel):
    index: int
    title: str | None
    text: str


class TopicDocumentsPublic(BaseModel):
    """``GET /api/v1/jobs/{id}/topics/{n}/documents``: a page of a topic's documents in submission order."""

    documents: list[TopicDocument]
    total: int


class DocumentMoved(BaseModel):
    """``PATCH /api/v1/jobs/{id}/documents/{index}``: where the document is now and where it was."""

    index: int
    topic: int
    previous_topic: int


class MapDocumentPublic(BaseModel):
    """One document for the map's hover and side panel."""

    index: int
    title: str | None
    text: str
    topic: int  # -1: an outlier
    label: str | None  # the topic's shown label; null for an outlier


class MapTopic(BaseModel):
    topic: int
    label: str
    label_source: Literal["llm", "keywords", "custom"]
    size: int  # documents in it now
    x: float | None  # where its label goes (the median of its documents); null when it has none
    y: float | None
    theme: int | None


class MapTheme(BaseModel):
    theme: int
    label: str
    x: float | None  # its topics' label positions weighted by their sizes; null when none is placed
    y: float | None
    topics: list[int]
    size: int


class MapBounds(BaseModel):
    x: Annotated[list[float], Field(min_length=2, max_length=2)]  # [least, greatest]
    y: Annotated[list[float], Field(min_length=2, max_length=2)]


class MapPublic(BaseModel):
    """``GET /api/v1/jobs/{id}/map``: what the map draws besides its points, which come from ``points``."""

    n: int  # documents, i.e. points
    points: str  # the address of the binary points array
    topics: list[MapTopic]
    themes: list[MapTheme]
    bounds: MapBounds


class SearchResult(BaseModel):
    index: int
    title: str | None
    snippet: str  # matched words between U+E000 and U+E001
    topic: int
    label: str  # the topic's shown label, empty for an outlier


class SearchResultsPublic(BaseModel):
    results: list[SearchResult]  # best first
    total: int


class SearchIndicesPublic(BaseModel):
    indices: list[int]  # every match, ascending
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


class LabelRunsPublic(BaseModel):
    runs: list[LabelRunPublic]  # newest first


class HealthPublic(BaseModel):
    """``GET /healthz``: whether the database and Redis answer, and the workers' states."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded", "unavailable"]
    database: str  # "ok" or "error: <exception type>"
    redis: str
    workers: list[dict[str, Any]]
    worker_ready: bool  # a ready worker serves every queue: a job can run end to end
    problems: list[str] = []  # what is down, in words (degraded, unavailable); empty when ok
