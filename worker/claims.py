"""What a worker holds while it runs work items: its claim on them, beaten with the database's clock, and the
progress it writes for their jobs; both stop the work (raise) once a job was cancelled or the claim was lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs, work
from shared.db import transaction
from shared.models import WorkItem
from worker.heartbeat import Heartbeat
from worker.pipeline.progress import overall

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The job left the running state (cancelled, or failed elsewhere) while this worker ran its item."""


class ClaimLost(Exception):
    """This worker's claim on the item was voided (it went silent and another worker took the item over)."""


class Claim:
    """The items one worker holds, beaten every ``interval`` seconds with the database's clock. ``check()``
    raises once an item's job stopped or the claim was lost."""

    def __init__(self, factory: sessionmaker[Session], items: Sequence[WorkItem], interval: float) -> None:
        self.factory, self.items = factory, list(items)
        self.alive = {item.job_id for item in items}
        self._heartbeat = Heartbeat(factory, self._beat, interval)

    def _beat(self, session: Session) -> None:
        self.alive = set(work.still_mine(session, self.items))

    def check(self, job_id: str) -> None:
        if job_id not in self.alive:
            with transaction(self.factory) as session:  # a cancel or a take-over: say which
                status = jobs.get_job(session, job_id).status
            raise JobCancelled(job_id) if status != "running" else ClaimLost(job_id)

    def stopped(self, job_id: str) -> None:
        """The job was seen to have left the running state before the next beat: stop now (raises)."""
        self.alive.discard(job_id)
        self.check(job_id)

    def __enter__(self) -> Claim:
        self._heartbeat.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._heartbeat.__exit__(*exc)


class Progress:
    """Writes a job's stage and overall progress at most every ``interval`` seconds, and stops the stage (raises)
    when the job was cancelled. A database error while writing progress is logged, never fatal."""

    def __init__(self, factory: sessionmaker[Session], claim: Claim, job_id: str, interval: float = 0.5) -> None:
        self.factory, self.claim, self.job_id, self.interval = factory, claim, job_id, interval
        self._last = (None, 0.0)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.report(stage, overall(stage, done, total), final=done >= total)

    def report(self, stage: str, value: float, final: bool = False) -> None:
        self.claim.check(self.job_id)
        now = time.monotonic()
        if stage == self._last[0] and not final and now - self._last[1] < self.interval:
            return
        self._last = (stage, now)
        try:
            with transaction(self.factory) as session:
                running = self._write(session, stage, value)
        except DBAPIError as exc:
            log.warning("job %s: progress not saved (%s); the work goes on", self.job_id, exc)
            return
        if not running:  # cancelled since the claim's last beat: stop at this batch, not at the next beat
            self.claim.stopped(self.job_id)

    def _write(self, session: Session, stage: str, value: float) -> bool:
        """Write the progress; False when the job no longer runs."""
        return jobs.report_progress(session, self.job_id, stage, round(value, 4))

    def check(self) -> None:
        """For UMAP's epochs: raise if the job stopped."""
        self.claim.check(self.job_id)


class ChunkProgress(Progress):
    """Embedding progress of one chunk while other workers embed the job's other chunks: the documents of its
    finished chunks plus this chunk's ``done``, over all; never moving the job's progress backwards."""

    def __init__(self, factory: sessionmaker[Session], claim: Claim, job_id: str, plan: work.ChunkPlan) -> None:
        super().__init__(factory, claim, job_id)
        self.plan, self._done = plan, 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        self._done = done
        self.report(stage, 0.0, final=done >= total)  # the value needs the database: _write reads it

    def _write(self, session: Session, stage: str, _value: float) -> bool:
        embedded = work.embedded_documents(session, self.job_id, self.plan) + self._done
        return work.raise_progress(session, self.job_id, stage, round(overall(stage, embedded, self.plan.documents), 4))
