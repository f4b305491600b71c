"""SQLAlchemy ORM models. The ``jobs`` row is the source of truth for a job's state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


# Full-text search lives outside the ORM (migration 0006): an FTS5 table and its shadow tables on SQLite, an
# expression index on PostgreSQL. Schema comparisons (Alembic autogenerate, tests) leave these alone.
SEARCH_OBJECTS = ("document_search", "ix_documents_search")


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's ``include_object`` hook: everything but the search objects."""
    return not (reflected and compare_to is None and (name or "").startswith(SEARCH_OBJECTS))


class User(Base):
    """Someone who may use the service when ``TOPICQ_AUTH=token``. Only a hash of the API token is kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_documents: Mapped[int] = mapped_column(Integer)
    n_topics: Mapped[int | None] = mapped_column(Integer)
    n_outliers: Mapped[int | None] = mapped_column(Integer)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # outlier share, diversity, coherence, ...
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # workers that died on it
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # higher runs first
    embedding_key: Mapped[str | None] = mapped_column(String(200))  # artifact key of its embeddings, once known
    # What its label stage has to label, set when clustering is done (None before, and when labels are off).
    topics_to_label: Mapped[int | None] = mapped_column(Integer)
    themes_to_label: Mapped[int | None] = mapped_column(Integer)
    domains_to_label: Mapped[int | None] = mapped_column(Integer)
    # Who submitted it (None: submitted without accounts, TOPICQ_AUTH=none); a user is removed with their jobs.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class WorkItem(Base):
    """One unit of a job's work on one queue: a stage, or one chunk of a long stage.

    The table is the job's plan and its queue at once: a worker claims the ready item that has waited longest
    (higher priority first), runs it, and marks it done together with creating the next one in one
    transaction, so a re-delivered message or a resumed job never repeats finished work. Every time here
    comes from the database's clock, never a worker's.
    """

    __tablename__ = "work_items"
    __table_args__ = (
        UniqueConstraint("job_id", "stage", "chunk", name="uq_work_items_job_stage_chunk"),
        Index("ix_work_items_queue_status", "queue", "status"),
        Index("ix_work_items_stage_finished", "stage", "finished_at"),  # the newest finished items of a stage
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(16))  # embed, cluster, label, save
    chunk: Mapped[int] = mapped_column(Integer)
    queue: Mapped[str] = mapped_column(String(16))  # gpu or cpu
    status: Mapped[str] = mapped_column(String(16))  # ready, running, done
    ready_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float | None] = mapped_column(Float)  # time the finished run took
    worker: Mapped[str | None] = mapped_column(String(200))  # the worker running it, or that ran it
    token: Mapped[str | None] = mapped_column(String(36))  # the current claim; a stale worker's claim is void
    deaths: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # workers that died running it


class Document(Base):
    """One submitted document, in submission order (``idx`` from 0)."""

    __tablename__ = "documents"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)


class Topic(Base):
    """One topic of a finished job (outliers, topic -1, are not stored here)."""

    __tablename__ = "topics"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(Text)  # the generated label (LLM, or keywords as the fallback)
    label_source: Mapped[str] = mapped_column(String(16))  # "llm" or "keywords" (fallback)
    custom_label: Mapped[str | None] = mapped_column(Text)  # a user's rename; shown instead of ``label``
    keywords: Mapped[list[str]] = mapped_column(JSON)
    keyword_weights: Mapped[list[float] | None] = mapped_column(JSON)  # c-TF-IDF weight of each keyword
    representations: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    representative_docs: Mapped[list[int]] = mapped_column(JSON)  # document indices, most representative first
    theme: Mapped[int | None] = mapped_column(Integer)  # None when the job has too few topics for themes
    # Share of its (sampled) documents whose nearest label is its own label; None: not scored (keyword labels,
    # a job finished before, a re-label or a merge since).
    faithfulness: Mapped[float | None] = mapped_column(Float)
    provenance: Mapped[dict | None] = mapped_column(JSON)  # the prompts and raw answers behind ``label`` (see Label)

    @property
    def shown_label(self) -> str:
        """The label every page, API answer, map and export shows: the user's, else the generated one."""
        return self.custom_label or self.label

    @property
    def shown_source(self) -> str:
        return "custom" if self.custom_label else self.label_source


class Theme(Base):
    """A broad theme grouping several topics of a finished job (the second level of the hierarchy)."""

    __tablename__ = "themes"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    theme: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    label_source: Mapped[str] = mapped_column(String(16))
    topics: Mapped[list[int]] = mapped_column(JSON)  # topic ids, largest first
    size: Mapped[int] = mapped_column(Integer)  # documents in its topics
    provenance: Mapped[dict | None] = mapped_column(JSON)  # the prompts and raw answers behind ``label``
    domain: Mapped[int | None] = mapped_column(Integer)  # its domain; None when the job has none (under 8 themes)


class Domain(Base):
    """A domain grouping several themes of a finished job with 8 themes or more (the third level)."""

    __tablename__ = "domains"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    domain: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    label_source: Mapped[str] = mapped_column(String(16))
    themes: Mapped[list[int]] = mapped_column(JSON)  # theme ids, largest first
    size: Mapped[int] = mapped_column(Integer)  # documents in its themes
    provenance: Mapped[dict | None] = mapped_column(JSON)  # the prompts and raw answers behind ``label``


class JobArray(Base):
    """A per-document array of a job (topic ids, map coordinates), stored as one little-endian blob."""

    __tablename__ = "job_arrays"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    dtype: Mapped[str] = mapped_column(String(8))  # numpy dtype string, e.g. "<i4", "<f4"
    length: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class LabelRun(Base):
    """A labelling-only run over a finished job's topics (a re-label, optionally with a custom prompt).

    When it succeeds the topics get its labels; ``previous_labels`` keeps the ones it replaced.
    """

    __tablename__ = "label_runs"
    # One re-label run at a time per job, held by the database itself (SQLite and PostgreSQL both index partially).
    __table_args__ = (
        Index(
            "uq_label_runs_one_active", "job_id", unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str | None] = mapped_column(Text)  # None: the default prompt
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[dict[str, dict[str, str]] | None] = mapped_column(JSON)  # topic -> {label, label_source}
    previous_labels: Mapped[dict[str, dict[str, str]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Assignment(Base):
    """New documents to put into a finished job's topics (``POST /api/v1/jobs/<id>/assign``), and the answer.

    Like a re-label run, its state lives here and a queue message only carries its id: a worker embeds the
    documents and takes the most similar topic of the job's stored model, as BERTopic's ``transform`` does.
    """

    __tablename__ = "assignments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued, running, succeeded, failed
    documents: Mapped[list[str]] = mapped_column(JSON)
    topics: Mapped[list[int] | None] = mapped_column(JSON)  # one per document, -1: nearest to the outliers
    similarities: Mapped[list[float] | None] = mapped_column(JSON)  # cosine to that topic's embedding
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


from shared.merge_model import TopicMerge  # noqa: E402,F401  (on Base.metadata for Alembic; it imports Base)
