"""Runs one job: claim its row, run the pipeline outside any transaction, store the results.

Celery knows nothing of this module's internals and this module knows nothing of Celery, so tests
drive it directly on a real database.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs
from shared.db import transaction
from shared.schemas import JobParams
from shared.storage import ArtifactStore, array_from_bytes, array_to_bytes
from worker.pipeline.progress import overall
from worker.pipeline.run import PipelineConfig, PipelineResult, run_pipeline

log = logging.getLogger(__name__)

USER_SAFE_ERROR = "the topic pipeline failed on this corpus; the worker log has the details"


class JobCancelled(Exception):
    """The job's row left the running state while it ran."""


class Heartbeat:
    """Marks a job (or re-label run) alive every ``interval`` seconds from a side thread, also through long
    silent stages (UMAP reports nothing for minutes), so that recovery never takes a live one for a dead one."""

    def __init__(self, factory: sessionmaker[Session], beat: Callable[[Session], object], interval: float) -> None:
        self.factory, self.beat, self.interval = factory, beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="topicq-job-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with transaction(self.factory) as session:
                    self.beat(session)
            except Exception as exc:  # the database away for a moment: the next beat tries again
                log.warning("job heartbeat failed: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


class ProgressReporter:
    """Writes a job's stage and overall progress to its row, at most every ``interval`` seconds per stage."""

    def __init__(self, factory: sessionmaker[Session], job_id: str, interval: float = 0.5) -> None:
        self.factory = factory
        self.job_id = job_id
        self.interval = interval
        self._last_stage = ""
        self._last_write = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished_stage = done >= total
        if stage == self._last_stage and not finished_stage and now - self._last_write < self.interval:
            return
        self._last_stage, self._last_write = stage, now
        with transaction(self.factory) as session:
            still_running = jobs.report_progress(session, self.job_id, stage, round(overall(stage, done, total), 4))
        if not still_running:
            raise JobCancelled(self.job_id)


def embedding_key(model_name: str, windows: int, texts: list[str]) -> str:
    """Content hash of the corpus, the model and the windows per document: the same documents reuse their
    embeddings."""
    digest = hashlib.sha256(f"{model_name}|windows={windows}".encode())
    for text in texts:
        digest.update(b"\x00" + text.encode())
    return f"embeddings/{digest.hexdigest()}.npy"


def record_failure(
    factory: sessionmaker[Session], fail: Callable[[Session, str], None], logger: logging.Logger, what: str
) -> str:
    """Log the exception being handled to ``logger``, store the user-safe message through ``fail``
    (``jobs.fail`` or ``label_runs.fail_run`` with the id bound) and return the status "failed".
    Call it inside ``except``."""
    logger.exception("%s", what)
    with transaction(factory) as session:
        fail(session, USER_SAFE_ERROR)
    return "failed"


@dataclass
class JobRunner:
    factory: sessionmaker[Session]
    store: ArtifactStore
    embedding_model_name: str
    config: PipelineConfig
    models: Callable[[], tuple[object, object]]  # () -> (embedder, labeler), loaded once per process
    heartbeat_seconds: float = 5.0
    stale_after: timedelta = timedelta(minutes=1)

    def run(self, job_id: str) -> str:
        """Run one job to its end; returns the status it ended in (or 'skipped' when it was not queued)."""
        with transaction(self.factory) as session:
            if not jobs.claim(session, job_id, self.stale_after):
                log.info("job %s is not queued; skipping (a re-delivery or a cancelled job)", job_id)
                return "skipped"
        # The claim is committed: from here on every way out leaves the job finished.
        try:
            with transaction(self.factory) as session:
                params = JobParams.model_validate(jobs.get_job(session, job_id).params)
                texts = jobs.load_documents(session, job_id)
        except Exception:
            return record_failure(self.factory, lambda session, message: jobs.fail(session, job_id, message),
                                  log, f"job {job_id} could not be loaded")
        # The session is closed here: no connection is held during minutes of model work.
        try:
            with Heartbeat(self.factory, lambda session: jobs.beat(session, job_id), self.heartbeat_seconds):
                result = self._compute(job_id, texts, params)
        except JobCancelled:
            log.info("job %s was cancelled while running", job_id)
            return "cancelled"
        except Exception:
            return record_failure(self.factory, lambda session, message: jobs.fail(session, job_id, message),
                                  log, f"job {job_id} failed")
        with transaction(self.factory) as session:
            saved = jobs.finish(
                session,
                job_id,
                topics=[to_row(t) for t in result.topics],
                themes=[
                    jobs.ThemeRow(t.theme, t.label.text, t.label.source, t.topics, t.size) for t in result.themes
                ],
                scores=job_scores(result, params),
                arrays={
                    "topic": result.doc_topics.astype(np.int32),
                    "topic_original": result.original_doc_topics.astype(np.int32),
                    "x": result.coords[:, 0].astype(np.float32),
                    "y": result.coords[:, 1].astype(np.float32),
                },
                n_outliers=result.n_outliers,
            )
        return "succeeded" if saved else "cancelled"

    def _compute(self, job_id: str, texts: list[str], params: JobParams) -> PipelineResult:
        progress = ProgressReporter(self.factory, job_id)
        embedder, labeler = self.models()
        key = embedding_key(self.embedding_model_name, self.config.embedding_windows, texts)
        cached = self.store.get(key)
        embeddings = array_from_bytes(cached) if cached is not None else None
        if embeddings is not None and embeddings.shape[0] != len(texts):
            embeddings = None
        result = run_pipeline(texts, params, embedder, labeler, self.config, progress, embeddings)
        if cached is None:
            self.store.put(key, array_to_bytes(result.embeddings))
        progress("saving", 0, 1)
        return result


def to_row(topic) -> jobs.TopicRow:
    rep = topic.representation
    return jobs.TopicRow(
        topic=rep.topic,
        size=rep.size,
        label=topic.label.text,
        label_source=topic.label.source,
        keywords=rep.keywords,
        representations=rep.representations,
        representative_docs=rep.representative_docs,
        theme=topic.theme,
    )


def job_scores(result: PipelineResult, params: JobParams) -> dict:
    """What the job page and API show to compare runs: the scores, and which assignment they describe."""
    scores = result.scores.as_dict() if result.scores else {}
    before = float((result.original_doc_topics < 0).mean()) if len(result.original_doc_topics) else 0.0
    return scores | {
        "assignment": "reduced" if params.reduce_outliers else "original",
        "outlier_share_before_reduction": round(before, 4),
        "outliers_reassigned": int(((result.original_doc_topics < 0) & (result.doc_topics >= 0)).sum()),
    }
