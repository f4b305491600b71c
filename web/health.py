"""/healthz: whether the database and Redis answer and which workers are ready."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from shared.queue import QUEUES, redis_client, worker_states
from web import context

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    checks: dict[str, object] = {}
    try:
        context.db().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        client = redis_client(context.settings())
        client.ping()
        checks["redis"] = "ok"
        workers = worker_states(client)
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
        workers = []
    checks["workers"] = workers
    # Ready: a job can run end to end, i.e. a ready worker serves each queue (accelerator and CPU).
    serving = {q for w in workers if w.get("ready") for q in w.get("queues") or QUEUES}
    checks["worker_ready"] = set(QUEUES) <= serving
    healthy = checks["database"] == "ok" and checks["redis"] == "ok"
    checks["status"] = "ok" if healthy else "unavailable"
    return jsonify(checks), 200 if healthy else 503
