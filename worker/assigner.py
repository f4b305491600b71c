"""Runs one assignment: new documents embedded by this worker's model and put into a finished job's topics by
the job's stored model (the same rule as BERTopic's ``transform`` on the exported model)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from shared import assignments
from shared.bertopic_archive import topic_embeddings
from shared.db import transaction
from shared.storage import ArtifactStore, model_key
from worker.heartbeat import Heartbeat
from worker.pipeline.assign import assign
from worker.pipeline.embed import embed
from worker.stages import record_failure

log = logging.getLogger(__name__)


@dataclass
class AssignRunner:
    factory: sessionmaker[Session]
    store: ArtifactStore
    embedder: Callable[[], object]  # loaded once per process
    batch_size: int = 64
    # Each new document is embedded as BERTopic's own transform embeds it (the model's input, truncated), not
    # averaged over windows like a job's documents, so the downloaded model's ``transform`` agrees with this.
    windows: int = 1
    stale_after: timedelta = timedelta(minutes=1)
    heartbeat_seconds: float = 5.0

    def run(self, assignment_id: str) -> str:
        with transaction(self.factory) as session:
            if not assignments.claim(session, assignment_id, self.stale_after):
                return "skipped"
            assignment = assignments.get(session, assignment_id)
            job_id, documents = assignment.job_id, list(assignment.documents)
        try:
            archive = self.store.get(model_key(job_id))
            if archive is None:
                with transaction(self.factory) as session:
                    assignments.fail(session, assignment_id, "this job has no stored model (it finished before "
                                     "models were kept); run it again to assign documents to it")
                return "failed"
            with Heartbeat(self.factory, lambda session: assignments.beat(session, assignment_id),
                           self.heartbeat_seconds):
                matrix, ids, outliers = topic_embeddings(archive)
                vectors = embed(documents, self.embedder(), self.batch_size, max_windows=self.windows)
                topics, similarity = assign(vectors, matrix, ids, outliers)
        except Exception:
            fail = lambda session, message: assignments.fail(session, assignment_id, message)  # noqa: E731
            return record_failure(self.factory, fail, log, f"assignment {assignment_id} failed")
        with transaction(self.factory) as session:
            finished = assignments.finish(session, assignment_id, topics.tolist(), similarity.tolist())
        return "succeeded" if finished else "skipped"
