"""The contract between web and worker: the Celery app configuration, task names and queue names.

The web enqueues by task *name*, so it never imports the worker (nor torch, nor bertopic).

The database holds the work (``shared.work``); a message on a queue is a doorbell that says "an item is ready
on this queue", and the worker that takes it claims the fairest ready item from the database. So a duplicate
message finds nothing to do, and a lost one is rung again by the sweep.
"""

from __future__ import annotations

import json
import time

import redis
from celery import Celery

from shared.settings import Settings

WORK = "topicq.work"
RELABEL = "topicq.relabel"
ASSIGN = "topicq.assign"
MERGE = "topicq.merge"
QUEUES = {"gpu": "topicq.gpu", "cpu": "topicq.cpu"}  # work kind -> Celery queue (a Redis list of that name)
WORKER_KEY_PREFIX = "topicq:worker:"


def make_celery(settings: Settings, name: str = "topicq") -> Celery:
    if not settings.redis_url:
        raise RuntimeError("TOPICQ_REDIS_URL is not set (`topicq up` starts a Redis and sets it for you)")
    app = Celery(name, broker=settings.redis_url)
    app.conf.update(
        task_ignore_result=True,  # job state lives in the database, never in a result backend
        result_backend=None,
        task_default_queue=QUEUES["cpu"],
        # A doorbell is acknowledged when taken: the work it rings for is in the database, and the sweep rings
        # again for an item whose worker died, so nothing waits for Redis's visibility timeout.
        task_acks_late=False,
        worker_prefetch_multiplier=1,  # a busy worker does not hoard doorbells another worker could answer
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 6 * 3600},
        worker_hijack_root_logger=False,
        # Task events for Flower (the compose file's monitor): a doorbell's received/started/succeeded.
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


def ring(app: Celery, kind: str, times: int = 1) -> None:
    """Tell the workers of ``kind`` ("gpu" or "cpu") that items are ready; call after the items are committed."""
    for _ in range(times):
        app.send_task(WORK, args=[kind], queue=QUEUES[kind])


def enqueue_relabel(app: Celery, run_id: str) -> None:
    """Queue a re-label run id (accelerator work); call only after its row is committed."""
    app.send_task(RELABEL, args=[run_id], queue=QUEUES["gpu"])


def enqueue_assign(app: Celery, assignment_id: str) -> None:
    """Queue an assignment id (embedding work, on the accelerator's queue); call only after its row is committed."""
    app.send_task(ASSIGN, args=[assignment_id], queue=QUEUES["gpu"])


def enqueue_merge(app: Celery, merge_id: str) -> None:
    """Queue a topic merge id (embedding model and LLM: accelerator work); call only after its row is committed."""
    app.send_task(MERGE, args=[merge_id], queue=QUEUES["gpu"])


def waiting_messages(client: redis.Redis, kind: str) -> int:
    """Messages waiting in a queue (not those a worker has taken)."""
    return int(client.llen(QUEUES[kind]))


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
