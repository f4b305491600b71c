"""/metrics: the service's figures in the Prometheus text format (prometheus-client).

Everything is read from the database and Redis at each scrape by a custom collector, so every web process (and
every web machine) answers the same, and there is no multiprocess directory to share. Figures:

- ``topicq_jobs{status}``: jobs by status.
- ``topicq_work_items{queue,state}``: work items of active jobs that are planned, ready (waiting for a worker) or
  running;
  ``topicq_queue_messages{queue}``: doorbells waiting in Redis.
- ``topicq_work_item_seconds{stage}``: a histogram of how long finished work items took, by stage (embed and
  label items are chunks of a job's stage, cluster and save items the whole stage).
- ``topicq_embedding_documents_per_second`` and ``topicq_label_topics_per_second``: throughput of the embed and
  label items finished in the last ``WINDOW_SECONDS``, per second of work (summed over workers: two workers
  embedding at once show about the rate of each, the queue drains twice as fast); labels are counted by
  ``shared.label_estimate``, as the job page's labelling estimate counts them (theme labels too).
- ``topicq_worker_rss_bytes{worker,queues}``, ``topicq_worker_ready{worker,queues}``, ``topicq_workers_ready{queue}``:
  what each worker published in Redis (``shared.queue.worker_states``).
- ``topicq_database_up``, ``topicq_redis_up``: whether each answered this scrape (the other's figures still come).

No label holds a job id, a job name or a user. Access: open with TOPICQ_AUTH=none; with accounts on, an admin's
API token (``Authorization: Bearer``, which Prometheus sends from its scrape config's ``authorization``) or an
admin's page session; 401 without a recognised token, 404 for a user that is not an admin (nothing here for them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import redis
from flask import Blueprint, Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shared.label_estimate import label_rate
from shared.models import Job, WorkItem
from shared.queue import QUEUES, redis_client, waiting_messages, worker_states
from shared.schemas import JobStatus
from shared.settings import Settings
from shared.work import ACTIVE_JOB, STAGES, ChunkPlan, db_now
from web import auth, context
from web.errors import error_response

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)
ENDPOINT = "metrics.metrics"
WINDOW_SECONDS = 900  # throughput over the items finished in the last 15 minutes: a few embed chunks at least
# Work item durations in seconds: an embedding chunk takes seconds to minutes, clustering 600k documents an hour.
BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
STATUSES = JobStatus.__args__
ITEM_STATES = ("planned", "ready", "running")  # a work item's states before done


def init_app(app: Flask) -> None:
    """Register /metrics and its access check; call before ``auth.init_app``, so that the check answers
    a scraper (401/404 in the JSON error shape) before the login redirect meant for browsers would."""
    app.register_blueprint(bp)
    app.before_request(_require_admin)


@bp.get("/metrics")
def metrics():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(context.db(), context.settings()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


def _require_admin():
    if request.endpoint != ENDPOINT or not auth.accounts_on():
        return None
    user = auth.account()  # an API token, or an admin's signed-in page session
    if user is None:
        body, status = error_response(401, "unauthorized", "/metrics needs an admin's API token: "
                                                           "'Authorization: Bearer TOKEN'")
        return body, status, {"WWW-Authenticate": 'Bearer realm="topicq"'}
    if not user.is_admin:
        return error_response(404, "not_found", "no such page")
    return None


class ServiceCollector(Collector):
    """Reads the figures at collect() time from one database session and the service's Redis."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session, self.settings = session, settings

    def collect(self) -> Iterator[Metric]:
        database_up = GaugeMetricFamily("topicq_database_up", "1 if the job database answered this scrape.")
        try:
            families = list(self._from_database())
            database_up.add_metric([], 1)
        except SQLAlchemyError as exc:
            log.warning("/metrics: the job database did not answer: %s", type(exc).__name__)
            self.session.rollback()
            families = []
            database_up.add_metric([], 0)
        yield database_up
        yield from families
        yield from self._from_redis()

    # -- the database ---------------------------------------------------------------------------------

    def _from_database(self) -> Iterator[Metric]:
        yield self._jobs()
        yield self._work_items()
        yield self._durations()
        yield from self._throughput()

    def _jobs(self) -> Metric:
        counts = dict(self.session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        family = GaugeMetricFamily("topicq_jobs", "Jobs by status.", labels=["status"])
        for status in STATUSES:
            family.add_metric([status], counts.get(status, 0))
        return family

    def _work_items(self) -> Metric:
        rows = self.session.execute(
            select(WorkItem.queue, WorkItem.status, func.count())
            .join(Job, Job.id == WorkItem.job_id)
            .where(WorkItem.status.in_(ITEM_STATES), Job.status.in_(ACTIVE_JOB))
            .group_by(WorkItem.queue, WorkItem.status)
        )
        counts = {(queue, state): n for queue, state, n in rows}
        family = GaugeMetricFamily("topicq_work_items", "Work items of queued and running jobs: planned (an "
                                   "embedding chunk not yet let into the queue), ready (waiting for a worker of the "
                                   "queue) or running.", labels=["queue", "state"])
        for queue in QUEUES:
            for state in ITEM_STATES:
                family.add_metric([queue, state], counts.get((queue, state), 0))
        return family

    def _durations(self) -> Metric:
        """A histogram per stage, counted by the database (one row per stage, whatever the number of items)."""
        done = (WorkItem.status == "done") & WorkItem.seconds.is_not(None)
        columns = [func.sum(case((WorkItem.seconds <= bound, 1), else_=0)) for bound in BUCKETS]
        rows = self.session.execute(
            select(WorkItem.stage, func.count(), func.sum(WorkItem.seconds), *columns)
            .where(done).group_by(WorkItem.stage)
        )
        family = HistogramMetricFamily("topicq_work_item_seconds", "Seconds finished work items took, by stage "
                                       "(embed and label items are chunks).", labels=["stage"])
        seen = {}
        for stage, count, total, *cumulative in rows:
            seen[stage] = (count, total or 0.0, [int(c or 0) for c in cumulative])
        for stage in STAGES:
            count, total, cumulative = seen.get(stage, (0, 0.0, [0] * len(BUCKETS)))
            buckets = [(floatToGoString(b), c) for b, c in zip(BUCKETS, cumulative)] + [("+Inf", count)]
            family.add_metric([stage], buckets, sum_value=total)
        return family

    def _throughput(self) -> Iterator[Metric]:
        since = db_now(self.session) - timedelta(seconds=WINDOW_SECONDS)
        rows = self.session.execute(
            select(WorkItem.job_id, WorkItem.chunk, WorkItem.seconds, Job.n_documents)
            .join(Job, Job.id == WorkItem.job_id)
            .where(WorkItem.status == "done", WorkItem.stage == "embed",
                   WorkItem.seconds.is_not(None), WorkItem.finished_at >= since)
        ).all()
        plans = self._embedding_plans({job_id for job_id, *_ in rows})
        documents, seconds = 0, 0.0
        for job_id, chunk, took, n_documents in rows:
            start, stop = ChunkPlan(n_documents, plans[job_id]).bounds(chunk)
            documents += stop - start
            seconds += took
        labels = label_rate(self.session, self.settings.label_chunk_topics, since=since)  # as the job page counts
        for stage, name, what, rate in (
            ("embed", "topicq_embedding_documents_per_second", "Documents embedded",
             documents / seconds if seconds > 0 else 0.0),
            ("label", "topicq_label_topics_per_second", "Labels (of topics and themes) made", labels.labels_per_second),
        ):
            yield GaugeMetricFamily(name, f"{what} per second of work, over the {stage} items finished in the "
                                          f"last {WINDOW_SECONDS} s (0: none finished).", value=rate)

    def _embedding_plans(self, job_ids: set[str]) -> dict[str, int]:
        """Embedding chunks per job (``shared.work.ChunkPlan``: the job's documents split evenly across them)."""
        if not job_ids:
            return {}
        return dict(self.session.execute(
            select(WorkItem.job_id, func.count())
            .where(WorkItem.stage == "embed", WorkItem.job_id.in_(job_ids)).group_by(WorkItem.job_id)
        ).all())

    # -- Redis ----------------------------------------------------------------------------------------

    def _from_redis(self) -> Iterator[Metric]:
        redis_up = GaugeMetricFamily("topicq_redis_up", "1 if Redis answered this scrape.")
        try:
            client = redis_client(self.settings)
            messages = {kind: waiting_messages(client, kind) for kind in QUEUES}
            workers = worker_states(client)
        except (redis.RedisError, RuntimeError, TypeError) as exc:
            log.warning("/metrics: Redis did not answer: %s", type(exc).__name__)
            redis_up.add_metric([], 0)
            yield redis_up
            return
        redis_up.add_metric([], 1)
        yield redis_up
        queued = GaugeMetricFamily("topicq_queue_messages", "Doorbells waiting in Redis for a worker of the "
                                   "queue (the work itself waits in the database: topicq_work_items).",
                                   labels=["queue"])
        for kind, n in messages.items():
            queued.add_metric([kind], n)
        yield queued
        rss = GaugeMetricFamily("topicq_worker_rss_bytes", "Resident memory of each worker process, as it last "
                                "reported (every heartbeat).", labels=["worker", "queues"])
        ready = GaugeMetricFamily("topicq_worker_ready", "1 if the worker has loaded its models and takes work.",
                                  labels=["worker", "queues"])
        serving = {kind: 0 for kind in QUEUES}
        for worker in workers:
            name, kinds = str(worker.get("hostname")), worker.get("queues") or list(QUEUES)
            labels = [name, ",".join(kinds)]
            if worker.get("rss_bytes") is not None:
                rss.add_metric(labels, worker["rss_bytes"])
            ready.add_metric(labels, 1 if worker.get("ready") else 0)
            for kind in kinds:
                if worker.get("ready") and kind in serving:
                    serving[kind] += 1
        yield rss
        yield ready
        per_queue = GaugeMetricFamily("topicq_workers_ready", "Ready workers serving each queue (0: its work "
                                      "waits).", labels=["queue"])
        for kind, n in serving.items():
            per_queue.add_metric([kind], n)
        yield per_queue
