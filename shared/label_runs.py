"""Data access for re-label runs. Functions take a session and never commit."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import runs
from shared.jobs import without_faithfulness
from shared.models import Job, LabelRun, Topic
from shared.work import db_now

ACTIVE = runs.ACTIVE


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
    return runs.claim(session, LabelRun, run_id, stale_after, progress=0.0)


def report_run_progress(session: Session, run_id: str, progress: float) -> None:
    runs.beat(session, LabelRun, run_id, progress=progress)


def beat_run(session: Session, run_id: str) -> bool:
    return runs.beat(session, LabelRun, run_id)


def requeue_stale_runs(session: Session, older_than: timedelta) -> list[str]:
    """Like ``jobs.requeue_stale``: running runs whose worker went silent go back to queued; returns every
    queued run id."""
    return runs.requeue_stale(session, LabelRun, older_than, progress=0.0)


def finish_run(session: Session, run: LabelRun, labels: dict[int, tuple[str, str]],
               provenance: dict[int, dict | None] | None = None) -> bool:
    """Give the job's topics the run's labels ``{topic: (label, source)}`` (``provenance``: topic -> the prompts and
    answers behind its new label), keeping the replaced ones on the run;
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
        topics[number].faithfulness = None  # not scored: the re-label worker has no embedding model
        topics[number].provenance = (provenance or {}).get(number)
    job = session.get(Job, run.job_id)
    job.scores = without_faithfulness(job.scores)
    return True


def fail_run(session: Session, run_id: str, message: str) -> None:
    runs.fail(session, LabelRun, run_id, message)
