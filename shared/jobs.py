"""Data access for jobs and their results. Functions take a session and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared.models import Document, Job, JobArray, Theme, Topic, utcnow

INSERT_BATCH = 5_000
MAX_ATTEMPTS = 3
GAVE_UP = f"the worker stopped {MAX_ATTEMPTS} times while running this job (out of memory?); it was not retried"


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


@dataclass(frozen=True)
class ThemeRow:
    theme: int
    label: str
    label_source: str
    topics: list[int]
    size: int


def create_job(
    session: Session, *, name: str | None, documents: Sequence[tuple[str, str | None]], params: dict
) -> Job:
    """Insert a queued job with its documents ``(text, title)`` in submission order."""
    job = Job(
        id=str(uuid.uuid4()),
        name=name,
        status="queued",
        stage="queued",
        progress=0.0,
        params=params,
        n_documents=len(documents),
    )
    session.add(job)
    session.flush()
    for start in range(0, len(documents), INSERT_BATCH):
        chunk = documents[start : start + INSERT_BATCH]
        session.execute(
            Document.__table__.insert(),
            [{"job_id": job.id, "idx": start + i, "text": t, "title": title} for i, (t, title) in enumerate(chunk)],
        )
    return job


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, limit: int = 50, offset: int = 0) -> list[Job]:
    return list(session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit).offset(offset)))


def count_jobs(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Job)) or 0


def load_documents(session: Session, job_id: str) -> list[str]:
    return list(session.scalars(select(Document.text).where(Document.job_id == job_id).order_by(Document.idx)))


def document_texts(session: Session, job_id: str, indices: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    rows = session.execute(
        select(Document.idx, Document.text).where(Document.job_id == job_id, Document.idx.in_(wanted))
    )
    return {idx: text for idx, text in rows}


def claim(session: Session, job_id: str, stale_after: timedelta) -> bool:
    """Move a job to running if it is queued, or running on a worker silent for ``stale_after`` (it died).

    False when the job is finished, cancelled, or running on a live worker: a re-delivered message is then
    harmless.
    """
    now = utcnow()
    claimable = (Job.status == "queued") | ((Job.status == "running") & (Job.heartbeat_at < now - stale_after))
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, claimable, Job.attempts < MAX_ATTEMPTS)
        .values(
            status="running", stage="queued", progress=0.0, started_at=now, heartbeat_at=now, error=None,
            attempts=Job.attempts + 1,
        )
    )
    if result.rowcount == 1:
        return True
    # A job whose worker died under it MAX_ATTEMPTS times (out of memory, say) would kill every next one.
    session.execute(
        update(Job)
        .where(Job.id == job_id, claimable, Job.attempts >= MAX_ATTEMPTS)
        .values(status="failed", error=GAVE_UP, finished_at=now)
    )
    return False


def beat(session: Session, job_id: str) -> bool:
    """Mark a running job alive; False when it is no longer running."""
    result = session.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(heartbeat_at=utcnow()))
    return result.rowcount == 1


def report_progress(session: Session, job_id: str, stage: str, progress: float) -> bool:
    """Record progress of a running job; False when the job is no longer running (it was cancelled)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .values(stage=stage, progress=progress, heartbeat_at=utcnow())
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
    """Store the results and mark the job succeeded; False (nothing stored) if it is no longer running."""
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
    return True


def fail(session: Session, job_id: str, message: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(("queued", "running")))
        .values(status="failed", error=message, finished_at=utcnow())
    )


def cancel(session: Session, job_id: str) -> bool:
    """Cancel a queued or running job; a running one stops at its next progress report."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(("queued", "running")))
        .values(status="cancelled", finished_at=utcnow())
    )
    return result.rowcount == 1


def requeue_stale(session: Session, older_than: timedelta) -> list[str]:
    """Put running jobs whose worker stopped reporting back in the queue; returns every queued job id."""
    cutoff = utcnow() - older_than
    session.execute(
        update(Job)
        .where(Job.status == "running", (Job.heartbeat_at.is_(None)) | (Job.heartbeat_at < cutoff))
        .values(status="queued", stage="queued", progress=0.0)
    )
    return list(session.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.created_at)))


def themes_of(session: Session, job_id: str) -> list[Theme]:
    return list(session.scalars(select(Theme).where(Theme.job_id == job_id).order_by(Theme.theme)))


def topics_of(session: Session, job_id: str) -> list[Topic]:
    return list(session.scalars(select(Topic).where(Topic.job_id == job_id).order_by(Topic.topic)))


def load_array(session: Session, job_id: str, name: str) -> np.ndarray | None:
    row = session.get(JobArray, (job_id, name))
    if row is None:
        return None
    return np.frombuffer(row.data, dtype=np.dtype(row.dtype), count=row.length)


