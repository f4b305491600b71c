"""The contract between web and worker: the Celery app configuration, task names and queue names.

The web enqueues by task *name*, so it never imports the worker (nor torch, nor bertopic).
"""

from __future__ import annotations

import json
import time

import redis
from celery import Celery

from shared.settings import Settings

RUN_JOB = "topicq.run_job"
RELABEL = "topicq.relabel"
JOB_QUEUE = "topicq.jobs"
WORKER_KEY_PREFIX = "topicq:worker:"


def make_celery(settings: Settings, name: str = "topicq") -> Celery:
    if not settings.redis_url:
        raise RuntimeError("TOPICQ_REDIS_URL is not set (`topicq up` starts a Redis and sets it for you)")
    app = Celery(name, broker=settings.redis_url)
    app.conf.update(
        task_ignore_result=True,  # job state lives in the database, never in a result backend
        result_backend=None,
        task_default_queue=JOB_QUEUE,
        task_acks_late=True,  # a job whose worker dies is delivered again...
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # ...and a busy worker does not hoard queued jobs
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 6 * 3600},
        worker_hijack_root_logger=False,
    )
    return app


def enqueue_job(app: Celery, job_id: str) -> None:
    """Queue a job id; call only after the job row is committed."""
    app.send_task(RUN_JOB, args=[job_id], queue=JOB_QUEUE)


def enqueue_relabel(app: Celery, run_id: str) -> None:
    """Queue a re-label run id; call only after its row is committed."""
    app.send_task(RELABEL, args=[run_id], queue=JOB_QUEUE)


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)


def publish_worker_state(client: redis.Redis, hostname: str, state: dict, ttl_seconds: float) -> None:
    payload = dict(state, hostname=hostname, seen_at=time.time())
    client.set(WORKER_KEY_PREFIX + hostname, json.dumps(payload), px=int(ttl_seconds * 1000))


def worker_states(client: redis.Redis) -> list[dict]:
    """Readiness records of the workers that reported recently (they expire when a worker stops)."""
    keys = sorted(client.scan_iter(match=WORKER_KEY_PREFIX + "*", count=100))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]
