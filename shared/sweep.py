"""The sweep: every worker runs it every few seconds (and `topicq recover` once), so that no accepted job waits
on a dead worker or a lost message. It is idempotent, so several workers sweeping at once is harmless.

1. Work whose heartbeat stopped (by the database's clock) goes back to ready; the death counts against the job.
2. Re-label runs likewise.
3. For each queue, as many doorbells are rung as ready items outnumber the messages waiting in Redis: a job
   accepted while Redis was down, or a Redis that restarted empty, gets its messages back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from shared import assignments, label_runs, merges, work
from shared.db import transaction
from shared.queue import QUEUES, enqueue_assign, enqueue_merge, enqueue_relabel, ring, waiting_messages

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    ready: dict[str, int] = field(default_factory=dict)  # ready items per queue
    rung: dict[str, int] = field(default_factory=dict)  # doorbells rung per queue
    relabels: int = 0  # queued re-label runs sent again
    assignments: int = 0  # queued assignments sent again
    merges: int = 0  # queued topic merges sent again


def sweep(factory: sessionmaker[Session], app: Celery, client: redis.Redis, stale_after: timedelta) -> SweepReport:
    with transaction(factory) as session:
        ready = work.sweep(session, stale_after)
        queued_runs = label_runs.requeue_stale_runs(session, stale_after)
        queued_assignments = assignments.requeue_stale(session, stale_after)
        queued_merges = merges.requeue_stale(session, stale_after)
    report = SweepReport(ready=ready)
    for kind in QUEUES:
        missing = ready.get(kind, 0) - waiting_messages(client, kind)
        if missing > 0:
            ring(app, kind, missing)
            report.rung[kind] = missing
    if queued_runs and waiting_messages(client, "gpu") < len(queued_runs) + ready.get("gpu", 0):
        for run_id in queued_runs:  # a duplicate finds its run claimed already
            enqueue_relabel(app, run_id)
        report.relabels = len(queued_runs)
    # An assignment waits in its request's answer: one queued for a whole sweep lost its message (Redis down).
    waiting = waiting_messages(client, "gpu")
    if queued_assignments and waiting < len(queued_assignments) + ready.get("gpu", 0) + len(queued_runs):
        for assignment_id in queued_assignments:  # a duplicate finds it claimed already
            enqueue_assign(app, assignment_id)
        report.assignments = len(queued_assignments)
    others = ready.get("gpu", 0) + len(queued_runs) + len(queued_assignments)
    if queued_merges and waiting_messages(client, "gpu") < len(queued_merges) + others:
        for merge_id in queued_merges:  # a duplicate finds it claimed already
            enqueue_merge(app, merge_id)
        report.merges = len(queued_merges)
    if report.rung or report.relabels or report.assignments or report.merges:
        log.info("sweep: rang %s for ready work, re-sent %d re-label run(s), %d assignment(s) and %d merge(s)",
                 report.rung, report.relabels, report.assignments, report.merges)
    return report
