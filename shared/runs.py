"""The life of a run row (a re-label run, an assignment, a topic merge): queued, claimed by one worker, beaten
while it works, finished or failed; a silent worker's run goes back to queued. One implementation for every
such table, each of which has ``id``, ``status``, ``error``, ``created_at``, ``started_at``, ``finished_at`` and
``heartbeat_at``. Functions take a session and never commit."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.work import db_now

ACTIVE = ("queued", "running")


def claim(session: Session, model, run_id: str, stale_after: timedelta, **values) -> bool:
    """Queued, or running on a worker silent for ``stale_after``: now running here (``values`` set as well)."""
    now = db_now(session)
    result = session.execute(
        update(model)
        .where(
            model.id == run_id,
            (model.status == "queued") | ((model.status == "running") & (model.heartbeat_at < now - stale_after)),
        )
        .values(status="running", started_at=now, heartbeat_at=now, **values)
    )
    return result.rowcount == 1


def beat(session: Session, model, run_id: str, **values) -> bool:
    """The worker on a running run is alive (``values`` set as well); False once the run is no longer running."""
    result = session.execute(
        update(model)
        .where(model.id == run_id, model.status == "running")
        .values(heartbeat_at=db_now(session), **values)
    )
    return result.rowcount == 1


def requeue_stale(session: Session, model, older_than: timedelta, **values) -> list[str]:
    """Running runs whose worker went silent go back to queued (``values`` reset as well); returns every queued
    id, oldest first."""
    session.execute(
        update(model)
        .where(
            model.status == "running",
            model.heartbeat_at.is_(None) | (model.heartbeat_at < db_now(session) - older_than),
        )
        .values(status="queued", **values)
    )
    return list(session.scalars(select(model.id).where(model.status == "queued").order_by(model.created_at)))


def fail(session: Session, model, run_id: str, message: str) -> None:
    session.execute(
        update(model)
        .where(model.id == run_id, model.status.in_(ACTIVE))
        .values(status="failed", error=message, finished_at=db_now(session))
    )
