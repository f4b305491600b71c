"""A job's work items: the plan of its stages, and the queue workers take them from. Functions take a session
and never commit.

A job is a chain of items: ``embed`` chunks (accelerator), ``cluster`` (CPU), ``label`` chunks (accelerator),
``save`` (CPU). A worker claims the ready item of its queue that has waited longest (higher job priority
first), so a large job's next chunk queues behind a small job that became ready meanwhile. Finishing an item
and creating the next one happen in one transaction: a re-delivered message or a resumed job never repeats
finished work, and the unique (job, stage, chunk) key never lets an item exist twice.

Every timestamp written or compared here is the database's clock (``db_now``), so workers on machines whose
clocks disagree still agree on whose heartbeat has stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.models import Job, WorkItem

GPU, CPU = "gpu", "cpu"
STAGES = ("embed", "cluster", "label", "save")
QUEUE_OF = {"embed": GPU, "cluster": CPU, "label": GPU, "save": CPU}
ACTIVE_JOB = ("queued", "running")
MAX_DEATHS = 3
GAVE_UP = f"a worker died {MAX_DEATHS} times while running this job's {{stage}} stage (out of memory?); it was not retried"


def db_now(session: Session) -> datetime:
    """The database server's current time (UTC, to the millisecond on SQLite)."""
    if session.get_bind().dialect.name == "sqlite":
        raw = session.scalar(select(func.strftime("%Y-%m-%d %H:%M:%f", "now")))
        return datetime.fromisoformat(raw).replace(tzinfo=timezone.utc)
    return session.scalar(select(func.now())).astimezone(timezone.utc)


def add_item(session: Session, job_id: str, stage: str, chunk: int = 0, now: datetime | None = None) -> None:
    """Make ``stage``/``chunk`` of a job ready, unless it exists already (a repeated call is harmless)."""
    exists = session.scalar(
        select(WorkItem.id).where(WorkItem.job_id == job_id, WorkItem.stage == stage, WorkItem.chunk == chunk)
    )
    if exists is None:
        session.add(WorkItem(job_id=job_id, stage=stage, chunk=chunk, queue=QUEUE_OF[stage], status="ready",
                             ready_at=now or db_now(session), deaths=0))
        session.flush()


def start_job(session: Session, job_id: str) -> None:
    """A new job's first item."""
    add_item(session, job_id, "embed", 0)


def claim(session: Session, queue: str, worker: str, *, batch_stage: str | None = None, batch: int = 1) -> list[WorkItem]:
    """Claim the fairest ready item on ``queue``, and when it is a ``batch_stage`` item, up to ``batch - 1`` more
    ready items of that stage from other jobs (labels batched across jobs). Empty when nothing is ready.

    Fairest: the highest job priority, then the item that became ready first. Items of cancelled or finished
    jobs are never claimed. Claimed items are ``running`` under a fresh token; their jobs are ``running``.
    """
    now = db_now(session)
    token = str(uuid.uuid4())
    claimed: list[WorkItem] = []
    taken_jobs: set[str] = set()
    while True:
        candidates = (
            select(WorkItem.id, WorkItem.job_id)
            .join(Job, Job.id == WorkItem.job_id)
            .where(WorkItem.queue == queue, WorkItem.status == "ready", Job.status.in_(ACTIVE_JOB))
            .order_by(Job.priority.desc(), WorkItem.ready_at, WorkItem.id)
        )
        if claimed:
            candidates = candidates.where(WorkItem.stage == claimed[0].stage, WorkItem.job_id.not_in(taken_jobs))
        row = session.execute(candidates.limit(1).with_for_update(skip_locked=True, of=WorkItem)).first()
        if row is None:
            break
        won = session.execute(
            update(WorkItem)
            .where(WorkItem.id == row.id, WorkItem.status == "ready")
            .values(status="running", token=token, worker=worker, started_at=now, heartbeat_at=now)
        ).rowcount
        if won != 1:  # another worker took it between the select and the update: look again
            continue
        item = session.get(WorkItem, row.id, populate_existing=True)
        claimed.append(item)
        taken_jobs.add(item.job_id)
        session.execute(
            update(Job)
            .where(Job.id == item.job_id, Job.status.in_(ACTIVE_JOB))
            .values(status="running", heartbeat_at=now, started_at=func.coalesce(Job.started_at, now))
        )
        if item.stage != batch_stage or len(claimed) >= batch:
            break
    return claimed


def still_mine(session: Session, items: Sequence[WorkItem]) -> list[str]:
    """Beat the claimed items; returns the job ids whose item is still this claim's and whose job still runs."""
    now = db_now(session)
    alive = []
    for item in items:
        beaten = session.execute(
            update(WorkItem)
            .where(WorkItem.id == item.id, WorkItem.token == item.token, WorkItem.status == "running")
            .values(heartbeat_at=now)
        ).rowcount
        running = session.scalar(select(Job.status).where(Job.id == item.job_id)) == "running"
        if beaten and running:
            session.execute(update(Job).where(Job.id == item.job_id).values(heartbeat_at=now))
            alive.append(item.job_id)
    return alive


def complete(session: Session, item: WorkItem, seconds: float, then: Iterable[tuple[str, int]] = ()) -> bool:
    """Mark a claimed item done and make the ``then`` items ``(stage, chunk)`` ready, at once; False (nothing
    changed) when the claim is void (the item was taken over after this worker went silent) or the job stopped."""
    now = db_now(session)
    done = session.execute(
        update(WorkItem)
        .where(WorkItem.id == item.id, WorkItem.token == item.token, WorkItem.status == "running")
        .values(status="done", finished_at=now, heartbeat_at=now, seconds=round(seconds, 3))
    ).rowcount
    if done != 1 or session.scalar(select(Job.status).where(Job.id == item.job_id)) != "running":
        return False
    for stage, chunk in then:
        add_item(session, item.job_id, stage, chunk, now)
    return True


def release(session: Session, *, worker: str | None = None, token: str | None = None, item_id: int | None = None,
            died: bool) -> int:
    """Put running items back to ready: a worker's (``worker``), one claim's (``token``), or one item of it
    (``item_id`` too). ``died``: the worker died under them, which counts against the job; a graceful stop does
    not. Returns how many."""
    query = select(WorkItem).where(WorkItem.status == "running")
    if item_id is not None:
        query = query.where(WorkItem.id == item_id)
    if worker is not None:
        query = query.where(WorkItem.worker == worker)
    if token is not None:
        query = query.where(WorkItem.token == token)
    return _back_to_ready(session, list(session.scalars(query)), died)


def sweep(session: Session, stale_after: timedelta) -> dict[str, int]:
    """Re-ready running items whose heartbeat stopped ``stale_after`` ago (their worker died); returns the
    number of ready items of active jobs per queue, for the caller to ring that many doorbells."""
    cutoff = db_now(session) - stale_after
    stale = session.scalars(
        select(WorkItem).where(WorkItem.status == "running",
                               WorkItem.heartbeat_at.is_(None) | (WorkItem.heartbeat_at < cutoff))
    )
    _back_to_ready(session, list(stale), died=True)
    rows = session.execute(
        select(WorkItem.queue, func.count())
        .join(Job, Job.id == WorkItem.job_id)
        .where(WorkItem.status == "ready", Job.status.in_(ACTIVE_JOB))
        .group_by(WorkItem.queue)
    )
    return {queue: count for queue, count in rows}


def _back_to_ready(session: Session, items: list[WorkItem], died: bool) -> int:
    now = db_now(session)
    for item in items:
        deaths = item.deaths + (1 if died else 0)
        session.execute(
            update(WorkItem)
            .where(WorkItem.id == item.id, WorkItem.status == "running")
            .values(status="ready", token=None, ready_at=now, deaths=deaths, heartbeat_at=None)
        )
        if died:
            session.execute(update(Job).where(Job.id == item.job_id).values(attempts=Job.attempts + 1))
        if deaths >= MAX_DEATHS:
            session.execute(
                update(Job)
                .where(Job.id == item.job_id, Job.status.in_(ACTIVE_JOB))
                .values(status="failed", error=GAVE_UP.format(stage=item.stage), finished_at=now)
            )
    return len(items)


@dataclass(frozen=True)
class StageTime:
    stage: str
    status: str  # waiting, running, done
    chunks_done: int
    chunks: int  # known so far (later chunks appear as earlier ones finish)
    seconds: float  # summed over its finished chunks
    worker: str | None  # the worker on it now, else the last one that ran it


def stage_times(session: Session, job_id: str) -> list[StageTime]:
    """Each stage a job has reached so far, in pipeline order, with the time its finished chunks took."""
    items = list(session.scalars(select(WorkItem).where(WorkItem.job_id == job_id).order_by(WorkItem.id)))
    out = []
    for stage in STAGES:
        mine = [i for i in items if i.stage == stage]
        if not mine:
            continue
        done = [i for i in mine if i.status == "done"]
        running = [i for i in mine if i.status == "running"]
        status = "done" if len(done) == len(mine) else "running" if running else "waiting"
        worker = running[0].worker if running else (done[-1].worker if done else None)
        out.append(StageTime(stage, status, len(done), len(mine), round(sum(i.seconds or 0 for i in done), 3), worker))
    return out


def running_item(session: Session, job_id: str) -> WorkItem | None:
    return session.scalars(select(WorkItem).where(WorkItem.job_id == job_id, WorkItem.status == "running")).first()
