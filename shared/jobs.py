"""Data access for jobs and their results. Functions take a session and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared import search, work
from shared.models import Assignment, Document, Job, JobArray, LabelRun, Theme, Topic, TopicMerge, WorkItem, utcnow

INSERT_BATCH = 5_000
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class TopicRow:
    """What the worker saves for one topic."""

    topic: int
    size: int
    label: str
    label_source: str
    keywords: list[str]
    representations: dict[str, list[str]]
    representative_docs: list[int]
    theme: int | None = None
    keyword_weights: list[float] | None = None  # c-TF-IDF weight of each keyword


@dataclass(frozen=True)
class ThemeRow:
    theme: int
    label: str
    label_source: str
    topics: list[int]
    size: int


def create_job(
    session: Session, *, name: str | None, documents: Sequence[tuple[str, str | None]], params: dict,
    priority: int = 0, owner_id: int | None = None,
) -> Job:
    """Insert a queued job with its documents ``(text, title)`` in submission order, and its first work item;
    ``owner_id``: the user submitting it (None without accounts)."""
    job = Job(
        id=str(uuid.uuid4()),
        name=name,
        status="queued",
        stage="queued",
        progress=0.0,
        params=params,
        n_documents=len(documents),
        priority=priority,
        attempts=0,
        owner_id=owner_id,
    )
    session.add(job)
    session.flush()
    for start in range(0, len(documents), INSERT_BATCH):
        chunk = documents[start : start + INSERT_BATCH]
        session.execute(
            Document.__table__.insert(),
            [{"job_id": job.id, "idx": start + i, "text": t, "title": title} for i, (t, title) in enumerate(chunk)],
        )
    work.start_job(session, job.id)
    return job


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, limit: int = 50, offset: int = 0, owner_id: int | None = None) -> list[Job]:
    """Newest first; ``owner_id``: only that user's jobs (None: everyone's)."""
    query = _owned(select(Job), owner_id).order_by(Job.created_at.desc(), Job.id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def count_jobs(session: Session, owner_id: int | None = None) -> int:
    return session.scalar(_owned(select(func.count()).select_from(Job), owner_id)) or 0


def count_unfinished(session: Session, owner_id: int) -> int:
    """A user's jobs still queued or running."""
    query = select(func.count()).select_from(Job).where(Job.owner_id == owner_id,
                                                         Job.status.in_(("queued", "running")))
    return session.scalar(query) or 0


def _owned(query, owner_id: int | None):
    return query if owner_id is None else query.where(Job.owner_id == owner_id)


def load_documents(session: Session, job_id: str, start: int = 0, stop: int | None = None) -> list[str]:
    """The texts of documents ``start`` to ``stop`` (exclusive; None: to the end), in order."""
    query = select(Document.text).where(Document.job_id == job_id, Document.idx >= start)
    if stop is not None:
        query = query.where(Document.idx < stop)
    return list(session.scalars(query.order_by(Document.idx)))


def document_texts(session: Session, job_id: str, indices: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    rows = session.execute(
        select(Document.idx, Document.text).where(Document.job_id == job_id, Document.idx.in_(wanted))
    )
    return {idx: text for idx, text in rows}


def report_progress(session: Session, job_id: str, stage: str, progress: float) -> bool:
    """Record progress of a running job; False when the job is no longer running (it was cancelled)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .values(stage=stage, progress=progress)  # the claim's heartbeat (the database's clock) marks it alive
    )
    return result.rowcount == 1


def finish(
    session: Session,
    job_id: str,
    *,
    topics: Sequence[TopicRow],
    arrays: dict[str, np.ndarray],
    n_outliers: int,
    themes: Sequence[ThemeRow] = (),
    scores: dict | None = None,
) -> bool:
    """Store the results, make the documents searchable and mark the job succeeded; False (nothing stored) if it
    is no longer running."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .values(
            status="succeeded",
            stage="done",
            progress=1.0,
            n_topics=len(topics),
            n_outliers=n_outliers,
            scores=scores,
            finished_at=utcnow(),
        )
    )
    if result.rowcount != 1:
        return False
    for table in (Topic, Theme, JobArray):
        session.execute(delete(table).where(table.job_id == job_id))
    session.add_all(Topic(job_id=job_id, **row.__dict__) for row in topics)
    session.add_all(Theme(job_id=job_id, **row.__dict__) for row in themes)
    for name, values in arrays.items():
        packed = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        session.add(JobArray(job_id=job_id, name=name, dtype=packed.dtype.str, length=len(packed), data=packed.tobytes()))
    search.index_job(session, job_id)
    return True


def fail(session: Session, job_id: str, message: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(("queued", "running")))
        .values(status="failed", error=message, finished_at=utcnow())
    )


def cancel(session: Session, job_id: str) -> bool:
    """Cancel a queued or running job: a queued one never starts, a running one stops at its next progress
    report (each chunk, and inside UMAP's epochs)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(("queued", "running")))
        .values(status="cancelled", finished_at=utcnow())
    )
    return result.rowcount == 1


def delete_job(session: Session, job_id: str) -> bool:
    """Delete a finished job with its documents (and their search rows), results, work items and re-label runs;
    False if it is still queued or running (cancel it first)."""
    if session.scalar(select(Job.status).where(Job.id == job_id)) not in FINISHED:
        return False
    search.unindex_job(session, job_id)
    # Every table of a job, also where foreign keys don't cascade (SQLite without the pragma).
    for table in (Document, Topic, Theme, JobArray, WorkItem, LabelRun, Assignment, TopicMerge):
        session.execute(delete(table).where(table.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id))
    return True


def themes_of(session: Session, job_id: str) -> list[Theme]:
    return list(session.scalars(select(Theme).where(Theme.job_id == job_id).order_by(Theme.theme)))


def topics_of(session: Session, job_id: str) -> list[Topic]:
    return list(session.scalars(select(Topic).where(Topic.job_id == job_id).order_by(Topic.topic)))


def load_array(session: Session, job_id: str, name: str) -> np.ndarray | None:
    row = session.get(JobArray, (job_id, name))
    if row is None:
        return None
    return np.frombuffer(row.data, dtype=np.dtype(row.dtype), count=row.length)


