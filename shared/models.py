"""SQLAlchemy ORM models. The ``jobs`` row is the source of truth for a job's state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


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
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # claims by a worker


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
    label: Mapped[str] = mapped_column(Text)
    label_source: Mapped[str] = mapped_column(String(16))  # "llm" or "keywords" (fallback)
    keywords: Mapped[list[str]] = mapped_column(JSON)
    representations: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    representative_docs: Mapped[list[int]] = mapped_column(JSON)  # document indices, most representative first
    theme: Mapped[int | None] = mapped_column(Integer)  # None when the job has too few topics for themes


class Theme(Base):
    """A broad theme grouping several topics of a finished job (the second level of the hierarchy)."""

    __tablename__ = "themes"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    theme: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    label_source: Mapped[str] = mapped_column(String(16))
    topics: Mapped[list[int]] = mapped_column(JSON)  # topic ids, largest first
    size: Mapped[int] = mapped_column(Integer)  # documents in its topics


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
