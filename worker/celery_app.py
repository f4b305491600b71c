"""The worker's Celery app: ``celery -A worker.celery_app worker --pool=solo -Q topicq.gpu`` (``topicq worker
--queues gpu`` does this).

A worker takes work from the queues in TOPICQ_WORKER_QUEUES: ``gpu`` (embedding and labels: it loads the
embedding model and the LLM) and/or ``cpu`` (UMAP, HDBSCAN, representations, saving: the embedding model only).
Models load when the worker starts, before it takes any work. A side thread publishes the worker's state to
Redis (the web's /healthz and /api/v1/workers read it) and runs the sweep.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import lru_cache

import psutil
from celery import signals

from shared import work
from shared.db import make_engine, make_session_factory, transaction
from shared.models import WorkItem
from shared.queue import ASSIGN, MERGE, RELABEL, WORK, make_celery, publish_worker_state, redis_client, ring
from shared.settings import get_settings
from shared.storage import ArtifactStore, check_store, open_store
from shared.sweep import sweep
from worker import models as model_registry
from worker.pipeline.run import PipelineConfig
from worker.assigner import AssignRunner
from worker.merger import MergeRunner
from worker.relabel import RelabelRunner
from worker.stages import Chunking, StageRunner

log = logging.getLogger("topicq.worker")

settings = get_settings()
app = make_celery(settings, name="topicq-worker")
QUEUES = [q.strip() for q in settings.worker_queues.split(",") if q.strip()]
LABELS = "gpu" in QUEUES  # only accelerator workers load the LLM
_state: dict = {
    "ready": False, "status": "starting", "queues": QUEUES, "llm": settings.llm_model if LABELS else None,
    "embedding": settings.embedding_model, "job": None, "stage": None, "hostname": None,
}
_held: list[WorkItem] = []  # the items this worker runs now


@lru_cache
def _sessions():
    return make_session_factory(make_engine(settings))


@lru_cache
def _store() -> ArtifactStore:
    """The artifact store of every role in this process: the one the web reads too (TOPICQ_ARTIFACT_URL)."""
    return open_store(settings)


def _hold(items: list[WorkItem]) -> None:
    _held[:] = items
    _state.update(job=items[0].job_id if items else None, stage=items[0].stage if items else None,
                  status="busy" if items else "ready", jobs=[i.job_id for i in items])


@lru_cache
def runner() -> StageRunner:
    return StageRunner(
        factory=_sessions(),
        store=_store(),
        embedding_model_name=model_registry.embedding_cache_name(settings),
        embedding_model_ref=settings.embedding_model,
        config=PipelineConfig(
            embedding_batch_size=settings.embedding_batch_size,
            embedding_windows=settings.embedding_windows,
            doc_tokens=settings.llm_doc_tokens,
            doc_count=settings.llm_docs,
        ),
        embedder=lambda: model_registry.get_models(settings, labeler=LABELS).embedder,
        labeler=lambda: model_registry.get_models(settings, labeler=True).labeler,
        worker=_state["hostname"] or f"topicq@{socket.gethostname()}",
        chunking=Chunking(settings.embed_chunk_documents, settings.label_chunk_topics, settings.label_batch_jobs),
        heartbeat_seconds=settings.heartbeat_seconds,
        on_claim=_hold,
        ring=lambda kind: ring(app, kind),
    )


@lru_cache
def relabeler() -> RelabelRunner:
    return RelabelRunner(
        factory=_sessions(),
        labeler=lambda: model_registry.get_models(settings, labeler=True).labeler,
        doc_tokens=settings.llm_doc_tokens,
        doc_count=settings.llm_docs,
        stale_after=settings.stale_job_after,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


@lru_cache
def assigner() -> AssignRunner:
    return AssignRunner(
        factory=_sessions(),
        store=_store(),
        embedder=lambda: model_registry.get_models(settings, labeler=LABELS).embedder,
        batch_size=settings.embedding_batch_size,
        stale_after=settings.stale_job_after,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


@app.task(name=WORK)
def run_work(kind: str) -> None:
    """A doorbell: an item is ready on ``kind``'s queue. Runs the fairest ready item (maybe another job's)."""
    for outcome in runner().run_next(kind):
        log.info("%s", outcome)


@app.task(name=RELABEL)
def relabel(run_id: str) -> None:
    _state.update(status="busy", stage="relabel")
    try:
        status = relabeler().run(run_id)
    finally:
        _state.update(status="ready", stage=None)
    log.info("re-label run %s: %s", run_id, status)


@app.task(name=ASSIGN)
def assign_documents(assignment_id: str) -> None:
    _state.update(status="busy", stage="assign")
    try:
        status = assigner().run(assignment_id)
    finally:
        _state.update(status="ready", stage=None)
    log.info("assignment %s: %s", assignment_id, status)


@lru_cache
def merger() -> MergeRunner:
    return MergeRunner(
        factory=_sessions(),
        store=_store(),
        embedder=lambda: model_registry.get_models(settings, labeler=LABELS).embedder,
        labeler=lambda: model_registry.get_models(settings, labeler=True).labeler,
        embedding_model_ref=settings.embedding_model,
        doc_tokens=settings.llm_doc_tokens,
        doc_count=settings.llm_docs,
        stale_after=settings.stale_job_after,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


@app.task(name=MERGE)
def merge_topics(merge_id: str) -> None:
    _state.update(status="busy", stage="merge")
    try:
        status = merger().run(merge_id)
    finally:
        _state.update(status="ready", stage=None)
    log.info("topic merge %s: %s", merge_id, status)


def _beat(hostname: str, stop: threading.Event) -> None:
    """Publish this worker's state every heartbeat, and sweep every ``sweep_seconds``."""
    client = redis_client(settings)
    process = psutil.Process()
    next_sweep = 0.0
    while not stop.is_set():
        try:
            state = dict(_state, pid=os.getpid(), rss_bytes=process.memory_info().rss)
            publish_worker_state(client, hostname, state, ttl_seconds=3 * settings.heartbeat_seconds)
            if _state["ready"] and (now := time.monotonic()) >= next_sweep:
                next_sweep = now + settings.sweep_seconds
                sweep(_sessions(), app, client, settings.stale_job_after)
        except Exception as exc:  # Redis or the database away for a moment: the next beat tries again
            log.warning("heartbeat or sweep failed: %s", exc)
        stop.wait(settings.heartbeat_seconds)


_stop = threading.Event()


@signals.worker_ready.connect
def _start(sender=None, **_kwargs) -> None:
    """Runs once the worker is connected and its logging is set up; the solo pool takes no work until it returns."""
    hostname = getattr(sender, "hostname", None) or f"worker@{socket.gethostname()}:{os.getpid()}"
    _state["hostname"] = hostname
    threading.Thread(target=_beat, args=(hostname, _stop), daemon=True, name="topicq-heartbeat").start()
    try:
        check_store(_store())  # a wrong TOPICQ_ARTIFACT_URL, endpoint or credentials: stop now, not at a job
    except Exception:
        log.exception("could not use the artifact store; the worker exits")
        logging.shutdown()
        os._exit(3)
    if settings.load_models_on_start:
        _state["status"] = "loading models"
        try:
            models = model_registry.get_models(settings, labeler=LABELS)
            _state.update(device=models.device, embeddings=models.embedding_backend,
                          models=[settings.embedding_model] + ([settings.llm_model] if LABELS else []))
            if models.label_backend is not None:
                _state["labels"] = models.label_backend.as_dict()
        except Exception:
            # Celery swallows errors raised in signal handlers: exit, so a supervisor sees the failure
            # instead of a worker that takes work it cannot run.
            log.exception("could not load the models; the worker exits")
            logging.shutdown()
            os._exit(3)
    # Work still held under this worker's name belongs to an earlier life of it that died (a graceful stop
    # hands its work back): it is ready again now, not after the heartbeat goes stale.
    with transaction(_sessions()) as session:
        if released := work.release(session, worker=hostname, died=True):
            log.warning("took back %d item(s) this worker held when it died", released)
    _state.update(ready=True, status="ready")
    log.info("worker %s ready for queues %s", hostname, ", ".join(QUEUES))


@signals.worker_shutting_down.connect
def _hand_back(**_kwargs) -> None:
    """Ctrl-C or SIGTERM: give the held items back to the queue as they are (a restart is not a death); the
    task still running finds its claim void at its next progress report and stops."""
    _stop.set()
    if not _held:
        return
    try:
        with transaction(_sessions()) as session:
            work.release(session, token=_held[0].token, died=False)
        log.info("stopping: handed back %d work item(s)", len(_held))
    except Exception as exc:
        log.warning("stopping: could not hand back the work (%s); the sweep will", exc)
