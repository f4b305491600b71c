"""/healthz: whether the database and Redis answer and which workers are ready, summed up as one status.

- ``ok``: a job can be submitted and run end to end.
- ``degraded`` (still 200): the database answers, so jobs are accepted and their status and results are shown,
  but Redis or the workers do not, so new work waits; ``problems`` says what is down.
- ``unavailable`` (503): the database does not answer; nothing can be submitted or shown.
"""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from shared.queue import QUEUES, redis_client, worker_states
from shared.schemas import HealthPublic
from web import auth, context

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    problems: list[str] = []
    try:
        context.db().execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError as exc:
        database = f"error: {type(exc).__name__}"
        problems.append("the job database did not answer: nothing can be submitted or shown")
    try:
        client = redis_client(context.settings())
        client.ping()
        redis_state = "ok"
        workers = worker_states(client)
        if auth.visible_owner() is not None:  # /healthz is open: which job a worker is on is its owner's business
            workers = [{**w, "job": None, "stage": None} for w in workers]
    except redis.RedisError as exc:
        redis_state = f"error: {type(exc).__name__}"
        workers = []
        problems.append("Redis did not answer: jobs are accepted and wait in the database until it is back")
    # Ready: a job can run end to end, i.e. a ready worker serves each queue (accelerator and CPU).
    serving = {q for w in workers if w.get("ready") for q in w.get("queues") or QUEUES}
    missing = [q for q in QUEUES if q not in serving]
    if missing and redis_state == "ok":
        queues = f"the {' and '.join(missing)} queue{'s' if len(missing) > 1 else ''}"
        problems.append(f"no ready worker serves {queues}: jobs wait until one is ready")
    status = "unavailable" if database != "ok" else "degraded" if problems else "ok"
    body = HealthPublic(status=status, database=database, redis=redis_state, workers=workers,
                        worker_ready=not missing, problems=problems)
    return jsonify(body.model_dump()), 503 if status == "unavailable" else 200
