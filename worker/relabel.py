"""Runs one re-label: new labels for a finished job's topics, from their stored keywords and documents."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from shared import jobs, label_runs
from shared.db import transaction
from shared.prompts import MAIN_PROMPT
from shared.schemas import JobParams
from worker.labeling.base import Labeler
from worker.pipeline.label import LabelInput, label_topics
from worker.heartbeat import Heartbeat
from worker.stages import record_failure

log = logging.getLogger(__name__)


@dataclass
class RelabelRunner:
    factory: sessionmaker[Session]
    labeler: Callable[[], Labeler]  # loaded once per process
    doc_tokens: int
    doc_count: int = 3
    stale_after: timedelta = timedelta(minutes=1)
    heartbeat_seconds: float = 5.0

    def run(self, run_id: str) -> str:
        with transaction(self.factory) as session:
            if not label_runs.claim_run(session, run_id, self.stale_after):
                return "skipped"
            run = label_runs.get_run(session, run_id)
            template = run.prompt or MAIN_PROMPT
            topics = jobs.topics_of(session, run.job_id)
            texts = jobs.document_texts(session, run.job_id, (i for t in topics for i in t.representative_docs))
            inputs = [LabelInput(t.keywords, [texts[i] for i in t.representative_docs]) for t in topics]
            numbers = [t.topic for t in topics]
            language = JobParams.model_validate(jobs.get_job(session, run.job_id).params).label_language
        try:
            with Heartbeat(self.factory, lambda session: label_runs.beat_run(session, run_id), self.heartbeat_seconds):
                labels = label_topics(inputs, self.labeler(), doc_budget=self.doc_tokens, doc_count=self.doc_count,
                                      template=template, progress=self._reporter(run_id), language=language)
        except Exception:
            return record_failure(self.factory, lambda session, message: label_runs.fail_run(session, run_id, message),
                                  log, f"re-label run {run_id} failed")
        with transaction(self.factory) as session:
            run = label_runs.get_run(session, run_id)
            finished = label_runs.finish_run(session, run, {n: (l.text, l.source) for n, l in zip(numbers, labels)},
                                             {n: l.provenance for n, l in zip(numbers, labels)})
        return "succeeded" if finished else "skipped"

    def _reporter(self, run_id: str, interval: float = 0.5):
        last = 0.0

        def report(_stage: str, done: int, total: int) -> None:
            nonlocal last
            if time.monotonic() - last >= interval or done >= total:
                last = time.monotonic()
                with transaction(self.factory) as session:
                    label_runs.report_run_progress(session, run_id, round(done / total, 4) if total else 1.0)

        return report
