"""Data access for re-label runs. Functions take a session and never commit."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.models import LabelRun, Topic
from shared.work import db_now

ACTIVE = ("queued", "running")


def create_run(session: Session, job_id: str, prompt: str | None) -> LabelRun:
    run = LabelRun(id=str(uuid.uuid4()), job_id=job_id, status="queued", prompt=prompt, progress=0.0)
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: str) -> LabelRun | None:
    return session.get(LabelRun, run_id)


def runs_of(session: Session, job_id: str) -> list[LabelRun]:
    return list(session.scalars(select(LabelRun).where(LabelRun.job_id == job_id).order_by(LabelRun.created_at.desc())))


def active_run(session: Session, job_id: str) -> LabelRun | None:
    return session.scalars(select(LabelRun).where(LabelRun.job_id == job_id, LabelRun.status.in_(ACTIVE))).first()


def claim_run(session: Session, run_id: str, stale_after: timedelta) -> bool:
    """Like ``jobs.claim``: queued, or running on a worker silent for ``stale_after``."""
    now = db_now(session)
    result = session.execute(
        update(LabelRun)
        .where(
            LabelRun.id == run_id,
            (LabelRun.status == "queued")
            | ((LabelRun.status == "running") & (LabelRun.heartbeat_at < now - stale_after)),
        )
        .values(status="running", started_at=now, heartbeat_at=now, progress=0.0)
    )
    return result.rowcount == 1


def report_run_progress(session: Session, run_id: str, progress: float) -> None:
    session.execute(
        update(LabelRun)
        .where(LabelRun.id == run_id, LabelRun.status == "running")
        .values(progress=progress, heartbeat_at=db_now(session))
    )


def beat_run(session: Session, run_id: str) -> bool:
    result = session.execute(
        update(LabelRun).where(LabelRun.id == run_id, LabelRun.status == "running").values(heartbeat_at=db_now(session))
    )
    return result.rowcount == 1


def requeue_stale_runs(session: Session, older_than: timedelta) -> list[str]:
    """Like ``jobs.requeue_stale``: running runs whose worker went silent go back to queued; returns every
    queued run id."""
    session.execute(
        update(LabelRun)
        .where(
            LabelRun.status == "running",
            LabelRun.heartbeat_at.is_(None) | (LabelRun.heartbeat_at < db_now(session) - older_than),
        )
        .values(status="queued", progress=0.0)
    )
    return list(session.scalars(select(LabelRun.id).where(LabelRun.status == "queued").order_by(LabelRun.created_at)))


def finish_run(session: Session, run: LabelRun, labels: dict[int, tuple[str, str]]) -> bool:
    """Give the job's topics the run's labels ``{topic: (label, source)}``, keeping the replaced ones on the run;
    False (nothing changed) when the run is no longer running (failed, or taken over by another worker)."""
    claimed = session.execute(
        update(LabelRun)
        .where(LabelRun.id == run.id, LabelRun.status == "running")
        .values(status="succeeded", progress=1.0, finished_at=db_now(session))
    )
    if claimed.rowcount != 1:
        return False
    session.refresh(run)
    topics = {t.topic: t for t in session.scalars(select(Topic).where(Topic.job_id == run.job_id))}
    run.previous_labels = {str(k): {"label": t.label, "label_source": t.label_source} for k, t in topics.items()}
    run.labels = {str(k): {"label": label, "label_source": source} for k, (label, source) in labels.items()}
    for number, (label, source) in labels.items():
        topics[number].label, topics[number].label_source = label, source
    return True


def fail_run(session: Session, run_id: str, message: str) -> None:
    session.execute(
        update(LabelRun)
        .where(LabelRun.id == run_id, LabelRun.status.in_(ACTIVE))
        .values(status="failed", error=message, finished_at=db_now(session))
    )
