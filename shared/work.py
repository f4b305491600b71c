"""A job's work items: the plan of its stages, and the queue workers take them from. Functions take a session
and never commit.

A job is a chain of items: ``embed`` chunks (accelerator), ``cluster`` (CPU), ``label`` chunks (accelerator),
``save`` (CPU). A worker claims the ready item of its queue that has waited longest (higher job priority
first). Finishing an item and making the next ready happen in one transaction: a re-delivered message or a
resumed job never repeats finished work, and the unique (job, stage, chunk) key never lets an item exist twice.

Embedding is split so that several accelerator workers share one job: the job's first chunk plans all of its
chunks at once (``plan_embedding``), of which at most ``window`` are ready or running at a time; the rest wait
as ``planned`` and one becomes ready each time a chunk finishes (``complete_chunk``), queued behind whatever
became ready meanwhile. So a 300-chunk job takes ``window`` workers, not the whole queue: a small job submitted
while it embeds waits behind at most ``window - 1`` of its chunks per worker (all 300 ready at once would
make it wait for all of them, being younger). The chunk that finishes last makes ``cluster`` ready, exactly once.

Every timestamp written or compared here is the database's clock (``db_now``), so workers on machines whose
clocks disagree still agree on whose heartbeat has stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import case, func, select, update
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


def add_item(session: Session, job_id: str, stage: str, chunk: int = 0, now: datetime | None = None,
             status: str = "ready") -> None:
    """Make ``stage``/``chunk`` of a job ready (or ``planned``), unless it exists already (a repeated call is
    harmless); a ``planned`` item asked to be ready becomes ready."""
    now = now or db_now(session)
    existing = session.execute(
        select(WorkItem.id, WorkItem.status)
        .where(WorkItem.job_id == job_id, WorkItem.stage == stage, WorkItem.chunk == chunk)
    ).first()
    if existing is None:
        session.add(WorkItem(job_id=job_id, stage=stage, chunk=chunk, queue=QUEUE_OF[stage], status=status,
                             ready_at=now, deaths=0))
        session.flush()
    elif existing.status == "planned" and status == "ready":
        session.execute(update(WorkItem).where(WorkItem.id == existing.id, WorkItem.status == "planned")
                        .values(status="ready", ready_at=now))


def start_job(session: Session, job_id: str) -> None:
    """A new job's first item: its first embedding chunk, which plans the others (``plan_embedding``)."""
    add_item(session, job_id, "embed", 0)


@dataclass(frozen=True)
class ChunkPlan:
    """How a job's ``documents`` are split into ``chunks`` embedding items: chunk k covers documents
    ``bounds(k)``. Every worker derives the same bounds from these two numbers, whatever its own chunk size."""

    documents: int
    chunks: int

    def bounds(self, chunk: int) -> tuple[int, int]:
        """Documents ``[start, stop)`` of ``chunk``: an even split, so no chunk is empty or much larger."""
        return chunk * self.documents // self.chunks, (chunk + 1) * self.documents // self.chunks


def embedding_plan(session: Session, job_id: str) -> ChunkPlan | None:
    """The job's chunk plan, or None before its first chunk made one (no embedding key yet)."""
    job = session.get(Job, job_id)
    if job is None or job.embedding_key is None:
        return None
    chunks = session.scalar(select(func.count()).select_from(WorkItem)
                            .where(WorkItem.job_id == job_id, WorkItem.stage == "embed"))
    return ChunkPlan(job.n_documents, chunks)


def plan_embedding(session: Session, job_id: str, key: str, chunks: int, window: int) -> bool:
    """Name the job's embedding cache entry ``key`` and make its chunks 1 .. ``chunks - 1``: up to ``window``
    chunks ready or running (chunk 0, the caller's, runs), the others ``planned``. Only the first call for a job
    plans (False for the others: a taken-over first chunk finds its plan made), on SQLite and PostgreSQL alike:
    setting the key only where it is still unset is the lock."""
    won = session.execute(
        update(Job).where(Job.id == job_id, Job.embedding_key.is_(None)).values(embedding_key=key)
    ).rowcount
    if won != 1:
        return False
    now = db_now(session)
    for chunk in range(1, chunks):
        add_item(session, job_id, "embed", chunk, now, status="ready" if chunk < window else "planned")
    return True


def embedded_documents(session: Session, job_id: str, plan: ChunkPlan) -> int:
    """Documents in the job's finished embedding chunks."""
    done = session.scalars(select(WorkItem.chunk).where(WorkItem.job_id == job_id, WorkItem.stage == "embed",
                                                       WorkItem.status == "done"))
    return sum(stop - start for start, stop in map(plan.bounds, done))


def raise_progress(session: Session, job_id: str, stage: str, progress: float) -> bool:
    """Record progress of a running job whose items run on several workers at once: it never moves back (each
    worker knows the finished chunks and its own share, not the others'). False when the job is not running."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .values(stage=stage, progress=case((Job.progress > progress, Job.progress), else_=progress))
    )
    return result.rowcount == 1


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


def _mark_done(session: Session, item: WorkItem, seconds: float, now: datetime) -> bool:
    """The claimed item done, if this claim still holds it (False when it was taken over meanwhile)."""
    return session.execute(
        update(WorkItem)
        .where(WorkItem.id == item.id, WorkItem.token == item.token, WorkItem.status == "running")
        # Milliseconds, and never 0: a finished item took time, and a 0 would make the label estimate say 0 s.
        .values(status="done", finished_at=now, heartbeat_at=now, seconds=max(round(seconds, 3), 0.001))
    ).rowcount == 1


def complete(session: Session, item: WorkItem, seconds: float, then: Iterable[tuple[str, int]] = ()) -> bool:
    """Mark a claimed item done and make the ``then`` items ``(stage, chunk)`` ready, at once; False (nothing
    changed) when the claim is void (the item was taken over after this worker went silent) or the job stopped."""
    now = db_now(session)
    done = _mark_done(session, item, seconds, now)
    if not done or session.scalar(select(Job.status).where(Job.id == item.job_id)) != "running":
        return False
    for stage, chunk in then:
        add_item(session, item.job_id, stage, chunk, now)
    return True


def complete_chunk(session: Session, item: WorkItem, seconds: float) -> list[tuple[str, int]] | None:
    """Mark a claimed embedding chunk done; the job's next planned chunk becomes ready, and when this was the
    last chunk not done, ``cluster`` does. Returns the items made ready, or None (nothing made ready) when the
    claim is void or the job stopped.

    Two workers finishing the job's last two chunks at once: each marks its own item done, then locks the job
    row before counting, so the second to count sees the first's commit (PostgreSQL, READ COMMITTED: each
    statement sees what committed before it began) and exactly one of them makes ``cluster`` ready. SQLite
    serialises writers from the first update on. The item first, then the job: the order ``claim`` and
    ``sweep`` take them in, so they never deadlock with it.
    """
    now = db_now(session)
    done = _mark_done(session, item, seconds, now)
    status = session.scalar(select(Job.status).where(Job.id == item.job_id).with_for_update())
    if not done or status != "running":
        return None
    chunks = select(WorkItem.id, WorkItem.chunk).where(WorkItem.job_id == item.job_id, WorkItem.stage == "embed")
    ready: list[tuple[str, int]] = []
    following = session.execute(chunks.where(WorkItem.status == "planned").order_by(WorkItem.chunk).limit(1)).first()
    if following is not None:
        add_item(session, item.job_id, "embed", following.chunk, now)
        ready.append(("embed", following.chunk))
    if session.execute(chunks.where(WorkItem.status != "done").limit(1)).first() is None:
        add_item(session, item.job_id, "cluster", 0, now)
        ready.append(("cluster", 0))
    return ready


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
    chunks: int  # known so far (embedding's all once planned; later label chunks appear as earlier ones finish)
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
