"""The worker's Celery app: ``celery -A worker.celery_app worker --pool=solo`` (``topicq worker`` does this).

Models load when the worker starts, before it takes a job, and a heartbeat in Redis tells the web
whether this worker is ready.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import lru_cache

from celery import signals

from shared.db import make_engine, make_session_factory
from shared.queue import RELABEL, RUN_JOB, make_celery, publish_worker_state, redis_client
from shared.settings import get_settings
from shared.storage import LocalArtifactStore
from worker import models as model_registry
from worker.pipeline.run import PipelineConfig
from worker.relabel import RelabelRunner
from worker.runner import JobRunner

log = logging.getLogger("topicq.worker")

settings = get_settings()
app = make_celery(settings, name="topicq-worker")
_state = {"ready": False, "status": "starting", "llm": settings.llm_model, "embedding": settings.embedding_model}
@lru_cache
def _sessions():
    return make_session_factory(make_engine(settings))


@lru_cache
def runner() -> JobRunner:
    return JobRunner(
        factory=_sessions(),
        store=LocalArtifactStore(settings.data_dir / "artifacts"),
        embedding_model_name=model_registry.embedding_cache_name(settings),
        config=PipelineConfig(
            embedding_batch_size=settings.embedding_batch_size,
            embedding_windows=settings.embedding_windows,
            doc_tokens=settings.llm_doc_tokens,
            doc_count=settings.llm_docs,
        ),
        models=_loaded_models,
        heartbeat_seconds=settings.heartbeat_seconds,
        stale_after=settings.stale_job_after,
    )


def _loaded_models():
    models = model_registry.get_models(settings)
    return models.embedder, models.labeler


@lru_cache
def relabeler() -> RelabelRunner:
    return RelabelRunner(
        factory=_sessions(),
        labeler=lambda: model_registry.get_models(settings).labeler,
        doc_tokens=settings.llm_doc_tokens,
        doc_count=settings.llm_docs,
        stale_after=settings.stale_job_after,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


@app.task(name=RUN_JOB)
def run_job(job_id: str) -> None:
    status = runner().run(job_id)
    log.info("job %s: %s", job_id, status)


@app.task(name=RELABEL)
def relabel(run_id: str) -> None:
    status = relabeler().run(run_id)
    log.info("re-label run %s: %s", run_id, status)


def _heartbeat(hostname: str, stop: threading.Event) -> None:
    client = redis_client(settings)
    while not stop.is_set():
        try:
            publish_worker_state(client, hostname, dict(_state, pid=os.getpid()), ttl_seconds=3 * settings.heartbeat_seconds)
        except Exception as exc:  # Redis away for a moment: the next beat tries again
            log.warning("heartbeat failed: %s", exc)
        stop.wait(settings.heartbeat_seconds)


_stop = threading.Event()


@signals.worker_ready.connect
def _load_models_at_start(sender=None, **_kwargs) -> None:
    """Runs once the worker is connected and its logging is set up; the solo pool takes no job until it returns."""
    hostname = getattr(sender, "hostname", None) or f"worker@{socket.gethostname()}:{os.getpid()}"
    threading.Thread(target=_heartbeat, args=(hostname, _stop), daemon=True, name="topicq-heartbeat").start()
    if settings.load_models_on_start:
        _state["status"] = "loading models"
        try:
            models = model_registry.get_models(settings)
            _state["labels"] = models.label_backend.as_dict()
            _state["embeddings"] = models.embedding_backend
        except Exception:
            # Celery swallows errors raised in signal handlers: exit, so a supervisor sees the failure
            # instead of a worker that takes jobs it cannot run.
            log.exception("could not load the models; the worker exits")
            logging.shutdown()
            os._exit(3)
    _state.update(ready=True, status="ready")


@signals.worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    _stop.set()
