"""Data access for assignments (new documents into a finished job's topics). Functions take a session and
never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from shared import runs
from shared.models import Assignment
from shared.work import db_now

ACTIVE = runs.ACTIVE


def create(session: Session, job_id: str, documents: Sequence[str]) -> Assignment:
    assignment = Assignment(id=str(uuid.uuid4()), job_id=job_id, status="queued", documents=list(documents))
    session.add(assignment)
    session.flush()
    return assignment


def get(session: Session, assignment_id: str) -> Assignment | None:
    return session.get(Assignment, assignment_id)


def claim(session: Session, assignment_id: str, stale_after: timedelta) -> bool:
    return runs.claim(session, Assignment, assignment_id, stale_after)


def beat(session: Session, assignment_id: str) -> bool:
    return runs.beat(session, Assignment, assignment_id)


def finish(session: Session, assignment_id: str, topics: Sequence[int], similarities: Sequence[float]) -> bool:
    result = session.execute(
        update(Assignment)
        .where(Assignment.id == assignment_id, Assignment.status == "running")
        .values(status="succeeded", topics=[int(t) for t in topics],
                similarities=[round(float(s), 4) for s in similarities], finished_at=db_now(session))
    )
    return result.rowcount == 1


def fail(session: Session, assignment_id: str, message: str) -> None:
    runs.fail(session, Assignment, assignment_id, message)


def requeue_stale(session: Session, older_than: timedelta) -> list[str]:
    """Running assignments whose worker went silent go back to queued; returns every queued id, oldest first."""
    return runs.requeue_stale(session, Assignment, older_than)


def delete_of_job(session: Session, job_id: str) -> None:
    session.execute(delete(Assignment).where(Assignment.job_id == job_id))
