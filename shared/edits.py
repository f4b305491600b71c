"""Edits a user makes to a finished job's results: renaming a topic, moving a document to another topic.

Functions take a session and never commit. Edits change the current results only: the generated labels stay in
``topics.label`` and the pipeline's assignment before outlier reduction in the "topic_original" array.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.models import Job, JobArray, Topic
from shared.sanitize import one_line

MAX_LABEL = 200
OUTLIER = -1


class EditError(ValueError):
    """An edit that cannot be made; ``code`` says why ("not_found", "invalid_label", "not_ready") and the message,
    one line, says it to the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def rename_topic(session: Session, job_id: str, topic: int, label: str | None) -> Topic:
    """Give a topic the user's label (one line: whitespace collapsed, control and invisible characters removed;
    at most MAX_LABEL characters); None or a blank label goes back to the generated one. Raises EditError for an
    unknown topic or a label too long."""
    row = session.get(Topic, (job_id, topic))
    if row is None:
        raise EditError("not_found", f"job {job_id} has no topic {topic}")
    cleaned = one_line(label or "")
    if len(cleaned) > MAX_LABEL:
        raise EditError("invalid_label", f"a label has at most {MAX_LABEL} characters, this one has {len(cleaned)}")
    row.custom_label = cleaned or None
    session.flush()
    return row


def move_document(session: Session, job_id: str, index: int, topic: int) -> int:
    """Put document ``index`` in ``topic`` (OUTLIER, -1, makes it an outlier) and return its previous topic.

    Updates the "topic" array, the sizes of both topics and the job's ``n_outliers``; the topics' keywords,
    representative documents and the job's scores are not recomputed. Moving a document to the topic it is in
    changes nothing. Two moves at once both count: the array's row is locked first (SELECT ... FOR UPDATE on
    PostgreSQL; on SQLite a write that takes the database's write lock before the array is read).
    Raises EditError for an unknown topic or index.
    """
    row = _locked_topic_array(session, job_id)
    topics = np.frombuffer(row.data, dtype=np.dtype(row.dtype), count=row.length).copy()
    if not 0 <= index < len(topics):
        raise EditError("not_found", f"job {job_id} has no document {index} (it has {len(topics)})")
    _check_topic(session, job_id, topic)
    previous = int(topics[index])
    if previous == topic:
        return previous
    topics[index] = topic
    row.data = topics.tobytes()
    for changed in (previous, topic):
        if changed != OUTLIER:
            session.execute(
                update(Topic).where(Topic.job_id == job_id, Topic.topic == changed)
                .values(size=int((topics == changed).sum()))
            )
    session.execute(update(Job).where(Job.id == job_id).values(n_outliers=int((topics == OUTLIER).sum())))
    session.flush()
    return previous


def documents_of_topic(session: Session, job_id: str, topic: int, limit: int, offset: int = 0) -> tuple[list[int], int]:
    """The indices of ``limit`` documents of ``topic`` (OUTLIER for the outliers) from ``offset``, in submission
    order, and how many it has. Raises EditError for an unknown topic or a job without results."""
    row = session.get(JobArray, (job_id, "topic"))
    if row is None:
        raise EditError("not_ready", f"job {job_id} has no results")
    _check_topic(session, job_id, topic)
    members = np.flatnonzero(np.frombuffer(row.data, dtype=np.dtype(row.dtype), count=row.length) == topic)
    return [int(i) for i in members[offset : offset + limit]], len(members)


def _locked_topic_array(session: Session, job_id: str) -> JobArray:
    where = (JobArray.job_id == job_id, JobArray.name == "topic")
    if session.get_bind().dialect.name == "sqlite":
        # SQLite ignores FOR UPDATE and pysqlite reads outside a transaction until its first write: write first,
        # so a concurrent move waits here for the lock and then reads what the other one committed.
        session.execute(
            update(JobArray).where(*where).values(length=JobArray.length).execution_options(synchronize_session=False)
        )
    row = session.scalars(
        select(JobArray).where(*where).with_for_update().execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        raise EditError("not_ready", f"job {job_id} has no results")
    return row


def _check_topic(session: Session, job_id: str, topic: int) -> None:
    if topic != OUTLIER and session.get(Topic, (job_id, topic)) is None:
        raise EditError("not_found", f"job {job_id} has no topic {topic}")
