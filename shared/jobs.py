"""Data access for jobs and their results. Functions take a session and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
from sqlalchemy import LargeBinary, delete, func, insert, select, update
from sqlalchemy.orm import Session

from shared import search, work
from shared.models import (
    Assignment, Document, Domain, Job, JobArray, LabelRun, Theme, Topic, TopicMerge, WorkItem, utcnow,
)

INSERT_BATCH = 5_000  # documents an INSERT stores
READ_BATCH = 5_000  # documents a query of iter_documents reads
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
    faithfulness: float | None = None  # share of its documents whose nearest label is its own; None: not scored
    provenance: dict | None = None  # prompts and raw answers behind the label, with the labeller; None: no LLM


FAITHFULNESS_SCORES = ("label_faithfulness", "label_faithfulness_before", "labels_flagged", "labels_reasked_kept")


def without_faithfulness(scores: dict | None) -> dict | None:
    """A job's scores less its label faithfulness: after a re-label or a merge (neither has the embedding model
    to score the new labels) the figure would describe labels the job no longer has."""
    return None if scores is None else {k: v for k, v in scores.items() if k not in FAITHFULNESS_SCORES}


@dataclass(frozen=True)
class ThemeRow:
    theme: int
    label: str
    label_source: str
    topics: list[int]
    size: int
    provenance: dict | None = None
    domain: int | None = None  # its domain; None when the job has none


@dataclass(frozen=True)
class DomainRow:
    domain: int
    label: str
    label_source: str
    themes: list[int]
    size: int
    provenance: dict | None = None


def create_job(
    session: Session, *, name: str | None, documents: Iterable[tuple[str, str | None]], params: dict,
    priority: int = 0, owner_id: int | None = None,
) -> Job:
    """Insert a queued job with its documents ``(text, title)`` in submission order, and its first work item;
    ``owner_id``: the user submitting it (None without accounts).

    ``documents`` may be a stream (an upload being parsed): it is stored INSERT_BATCH rows an INSERT as it comes,
    so memory holds one batch, and ``n_documents`` is set once it has all been counted. An error the stream raises
    midway propagates with the rows so far in the session's transaction: the caller rolls back, leaving nothing.
    """
    job = Job(
        id=str(uuid.uuid4()),
        name=name,
        status="queued",
        stage="queued",
        progress=0.0,
        params=params,
        n_documents=0,
        priority=priority,
        attempts=0,
        owner_id=owner_id,
    )
    session.add(job)
    session.flush()
    rows, count = iter(documents), 0
    while batch := list(islice(rows, INSERT_BATCH)):
        session.execute(
            insert(Document),
            [{"job_id": job.id, "idx": count + i, "text": t, "title": title} for i, (t, title) in enumerate(batch)],
        )
        count += len(batch)
    job.n_documents = count
    work.start_job(session, job.id)
    session.flush()
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


def iter_documents(
    session: Session, job_id: str, start: int = 0, stop: int | None = None, batch: int = READ_BATCH
) -> Iterator[list[str]]:
    """The texts of documents ``start`` to ``stop`` (exclusive; None: to the end), in order, a list of up to
    ``batch`` at a time: one query each, for a range of the key (``start <= idx < start + batch``, never OFFSET),
    so a batch costs the same at the end of a large job as at its start and memory holds one batch."""
    if stop is None:
        stop = session.scalar(select(func.coalesce(func.max(Document.idx), -1)).where(Document.job_id == job_id)) + 1
    for first in range(start, stop, batch):
        # Only the text column, as scalars: a Row per document would cost more than the query (3x on SQLite).
        texts = list(session.scalars(
            select(Document.text)
            .where(Document.job_id == job_id, Document.idx >= first, Document.idx < min(first + batch, stop))
            .order_by(Document.idx)
        ))
        if texts:
            yield texts


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


def plan_labels(session: Session, job_id: str, topics: int, themes: int, domains: int = 0) -> None:
    """Record how many topics, themes and domains the job's label stage has to label (clustering found them)."""
    session.execute(update(Job).where(Job.id == job_id).values(topics_to_label=topics, themes_to_label=themes,
                                                               domains_to_label=domains))


def finish(
    session: Session,
    job_id: str,
    *,
    topics: Sequence[TopicRow],
    arrays: dict[str, np.ndarray],
    n_outliers: int,
    themes: Sequence[ThemeRow] = (),
    scores: dict | None = None,
    domains: Sequence[DomainRow] = (),
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
    for table in (Topic, Theme, Domain, JobArray):
        session.execute(delete(table).where(table.job_id == job_id))
    # One INSERT of many rows per table (a job may have thousands of topics), not an ORM object per row.
    for table, rows in ((Topic, topics), (Theme, themes), (Domain, domains)):
        if rows:
            session.execute(insert(table), [{"job_id": job_id, **row.__dict__} for row in rows])
    packed = {name: np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
              for name, values in arrays.items()}
    if packed:
        session.execute(insert(JobArray), [
            {"job_id": job_id, "name": name, "dtype": values.dtype.str, "length": len(values), "data": values.tobytes()}
            for name, values in packed.items()
        ])
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
    for table in (Document, Topic, Theme, Domain, JobArray, WorkItem, LabelRun, Assignment, TopicMerge):
        session.execute(delete(table).where(table.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id))
    return True


def themes_of(session: Session, job_id: str) -> list[Theme]:
    return list(session.scalars(select(Theme).where(Theme.job_id == job_id).order_by(Theme.theme)))


def domains_of(session: Session, job_id: str) -> list[Domain]:
    return list(session.scalars(select(Domain).where(Domain.job_id == job_id).order_by(Domain.domain)))


def topics_of(session: Session, job_id: str) -> list[Topic]:
    return list(session.scalars(select(Topic).where(Topic.job_id == job_id).order_by(Topic.topic)))


def load_array(session: Session, job_id: str, name: str) -> np.ndarray | None:
    row = session.get(JobArray, (job_id, name))
    if row is None:
        return None
    return np.frombuffer(row.data, dtype=np.dtype(row.dtype), count=row.length)


def load_array_slices(
    session: Session, job_id: str, names: Sequence[str], start: int, stop: int
) -> dict[str, np.ndarray]:
    """Elements ``start`` to ``stop`` (exclusive, clipped to each array's length) of the job's arrays ``names``
    that exist, each of shape (stop - start,): the database cuts the bytes out of the blob (substr works on SQLite
    BLOBs and PostgreSQL bytea alike), so a page of a large job reads a page, not the whole array."""
    shapes = session.execute(
        select(JobArray.name, JobArray.dtype, JobArray.length)
        .where(JobArray.job_id == job_id, JobArray.name.in_(names))
    ).all()
    out: dict[str, np.ndarray] = {}
    for name, dtype, length in shapes:
        dtype = np.dtype(dtype)
        first = min(start, length)
        last = max(first, min(stop, length))
        data = session.scalar(
            select(func.substr(JobArray.data, first * dtype.itemsize + 1, (last - first) * dtype.itemsize,
                               type_=LargeBinary))
            .where(JobArray.job_id == job_id, JobArray.name == name)
        )
        out[name] = np.frombuffer(bytes(data or b""), dtype=dtype, count=last - first)
    return out


