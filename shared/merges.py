"""Data access for topic merges (two or more topics of a finished job made one). Functions take a session and
never commit.

A merge follows the re-label run's pattern: its row is committed first and its id queued; a worker claims the
row, beats its heartbeat while it works, and replaces the job's topics, themes and topic arrays in the same
transaction that marks the merge succeeded.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared import runs
from shared.jobs import DomainRow, ThemeRow, TopicRow, without_faithfulness
from shared.merge_model import TopicMerge
from shared.models import Domain, Job, JobArray, Theme, Topic
from shared.work import db_now

ACTIVE = runs.ACTIVE


def create(session: Session, job_id: str, topics: Sequence[int]) -> TopicMerge:
    merge = TopicMerge(id=str(uuid.uuid4()), job_id=job_id, status="queued", topics=[int(t) for t in topics])
    session.add(merge)
    session.flush()
    return merge


def get(session: Session, merge_id: str) -> TopicMerge | None:
    return session.get(TopicMerge, merge_id)


def merges_of(session: Session, job_id: str) -> list[TopicMerge]:
    """A job's merges, newest first."""
    query = select(TopicMerge).where(TopicMerge.job_id == job_id)
    return list(session.scalars(query.order_by(TopicMerge.created_at.desc(), TopicMerge.id)))


def active_merge(session: Session, job_id: str) -> TopicMerge | None:
    """The job's queued or running merge, if it has one."""
    return session.scalars(select(TopicMerge).where(TopicMerge.job_id == job_id,
                                                    TopicMerge.status.in_(ACTIVE))).first()


def claim(session: Session, merge_id: str, stale_after: timedelta) -> bool:
    return runs.claim(session, TopicMerge, merge_id, stale_after)


def beat(session: Session, merge_id: str) -> bool:
    return runs.beat(session, TopicMerge, merge_id)


def requeue_stale(session: Session, older_than: timedelta) -> list[str]:
    """Running merges whose worker went silent go back to queued; returns every queued id, oldest first."""
    return runs.requeue_stale(session, TopicMerge, older_than)


def fail(session: Session, merge_id: str, message: str) -> None:
    runs.fail(session, TopicMerge, merge_id, message)


def edited_since(session: Session, job_id: str, doc_topics: np.ndarray,
                 custom_labels: Mapping[int, str | None]) -> bool:
    """Whether the job's topics changed since a merge read them: a document moved (``doc_topics``, shape (n,),
    the "topic" array it read) or a topic renamed (``custom_labels``: topic id -> its custom label then). Renames
    and moves are refused while a merge is active; this catches one that was let in just before it."""
    row = session.get(JobArray, (job_id, "topic"), populate_existing=True)
    if row is None:
        return True
    current = np.frombuffer(row.data, dtype=np.dtype(row.dtype), count=row.length)
    if not np.array_equal(current, doc_topics):
        return True
    labels = dict(session.execute(select(Topic.topic, Topic.custom_label).where(Topic.job_id == job_id)).all())
    return labels != dict(custom_labels)


def finish(
    session: Session,
    merge_id: str,
    *,
    topics: Sequence[TopicRow],
    themes: Sequence[ThemeRow],
    arrays: Mapping[str, np.ndarray],
    n_outliers: int,
    result_topic: int,
    custom_labels: Mapping[int, str] | None = None,
    scores: dict | None = None,
    domains: Sequence[DomainRow] = (),
) -> bool:
    """Replace the merge's job's topics, themes and domains with ``topics``, ``themes`` and ``domains``
    (``custom_labels``: new topic id -> the user's label it keeps), write ``arrays`` (name -> shape (n,) values,
    "topic" and "topic_original") over the job's arrays of those names, and mark the merge succeeded with
    ``result_topic``, the merged topic's id; False (nothing changed) when the merge is no longer running (failed,
    or taken over by another worker) or its job is gone."""
    merge = session.get(TopicMerge, merge_id)
    job = session.get(Job, merge.job_id) if merge is not None else None
    if job is None or job.status != "succeeded":
        return False
    claimed = session.execute(
        update(TopicMerge)
        .where(TopicMerge.id == merge_id, TopicMerge.status == "running")
        .values(status="succeeded", result_topic=int(result_topic), finished_at=db_now(session))
    )
    if claimed.rowcount != 1:
        return False
    for table in (Topic, Theme, Domain):
        session.execute(delete(table).where(table.job_id == job.id))
    session.flush()
    custom_labels = custom_labels or {}
    session.add_all(Topic(job_id=job.id, custom_label=custom_labels.get(row.topic), **row.__dict__) for row in topics)
    session.add_all(Theme(job_id=job.id, **row.__dict__) for row in themes)
    session.add_all(Domain(job_id=job.id, **row.__dict__) for row in domains)
    for name, values in arrays.items():
        packed = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        row = session.get(JobArray, (job.id, name))
        if row is None:
            row = JobArray(job_id=job.id, name=name)
            session.add(row)
        row.dtype, row.length, row.data = packed.dtype.str, len(packed), packed.tobytes()
    job.n_topics, job.n_outliers = len(topics), int(n_outliers)
    if scores is not None:
        job.scores = scores
    job.scores = without_faithfulness(job.scores)  # the new rows are not scored either (faithfulness None)
    session.flush()
    return True
