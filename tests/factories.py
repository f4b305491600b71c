"""Rows for tests: a job, and a finished job with results, written through the real data-access layer."""

from __future__ import annotations

import numpy as np
from kombu import Connection
from sqlalchemy import update

from shared import jobs, work
from shared.db import transaction
from shared.models import Job, WorkItem, utcnow
from shared.queue import QUEUES


def drain_queue(settings, task_name: str, kind: str = "gpu") -> list[str]:
    """The first argument of each message waiting in the ``kind`` queue, read the way a worker receives them
    (a doorbell's is the kind it rings for, a re-label's the run id); each must be a ``task_name``."""
    args = []
    with Connection(settings.redis_url) as conn:
        queue = conn.SimpleQueue(QUEUES[kind])
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                break
            assert message.headers["task"] == task_name
            args.append(message.payload[0][0])
            message.ack()
        queue.close()
    return args


def make_job(sessions, texts: list[str] | None = None, params: dict | None = None, name: str = "test job",
             priority: int = 0) -> str:
    texts = texts or [f"document number {i} about topic {i % 3}" for i in range(30)]
    with transaction(sessions) as session:
        job = jobs.create_job(session, name=name, documents=[(t, None) for t in texts], params=params or {},
                              priority=priority)
        return job.id


# What label_batch records for an LLM label: the labeller, the conversation sent, the raw answer, a retry.
PROVENANCE = {
    "labeler": {"backend": "ScriptedLabeler", "model": "scripted-0.5b",
                "settings": {"max_new_tokens": 24, "decoding": "greedy", "doc_tokens": 40, "doc_count": 5}},
    "messages": [{"role": "system", "content": "You label topics."},
                 {"role": "user", "content": "Documents:\n- doc 1 <b>text</b>"}],
    "answer": 'Sure! Label: "A label" <script>alert(2)</script>',
    "retries": [{"reason": "unfaithful", "messages": [{"role": "user", "content": "Tell it apart from 'Second'"}],
                 "answer": "Second", "kept": False}],
}


def make_finished_job(sessions, label: str = "A label", n_docs: int = 30, texts: list[str] | None = None,
                      domain: str | None = None) -> str:
    job_id = make_job(sessions, texts or [f"doc {i} text" for i in range(n_docs)])
    return finish_job(sessions, job_id, n_docs, label, domain)


def finish_job(sessions, job_id: str, n_docs: int, label: str = "A label", domain: str | None = None) -> str:
    """Give a queued job of ``n_docs`` (at least 5) documents results, as if its stages had run: topics 0 and 1
    and outliers in turn, two topics under one theme, map coordinates; with ``domain``, a domain of that label
    above the theme."""
    topic_ids = np.array([i % 3 - 1 for i in range(n_docs)], dtype=np.int32)  # -1, 0, 1
    # As if workers had run its four stages (not through work.claim, which takes the fairest ready item of any job).
    with transaction(sessions) as session:
        for stage in work.STAGES:
            work.add_item(session, job_id, stage)
        session.execute(update(WorkItem).where(WorkItem.job_id == job_id)
                        .values(status="done", seconds=1.0, worker="test-worker"))
        session.execute(update(Job).where(Job.id == job_id).values(status="running", started_at=utcnow()))
    with transaction(sessions) as session:
        assert jobs.finish(
            session,
            job_id,
            topics=[
                jobs.TopicRow(0, int((topic_ids == 0).sum()), label, "llm", ["alpha", "beta"], {"KeyBERT": ["a"], "MMR": ["b"]}, [1, 4], theme=0,
                             faithfulness=0.8, provenance=PROVENANCE),
                jobs.TopicRow(1, int((topic_ids == 1).sum()), "Second", "keywords", ["gamma"], {"KeyBERT": [], "MMR": []}, [2], theme=0),
            ],
            themes=[jobs.ThemeRow(0, "Everything", "llm", [0, 1], int((topic_ids >= 0).sum()), PROVENANCE,
                                  0 if domain else None)],
            domains=[jobs.DomainRow(0, domain, "llm", [0], int((topic_ids >= 0).sum()), PROVENANCE)] if domain else [],
            scores={"outlier_share": 0.3333, "diversity": 1.0, "coherence_npmi": 0.25, "assignment": "reduced",
                    "outlier_share_before_reduction": 0.3667, "outliers_reassigned": 1,
                    "label_faithfulness": 0.85, "label_faithfulness_before": 0.75, "labels_flagged": 1,
                    "labels_reasked_kept": 1},
            arrays={
                "topic": topic_ids,
                "topic_original": np.where(np.arange(n_docs) == n_docs - 1, -1, topic_ids).astype(np.int32),
                "x": np.arange(n_docs, dtype=np.float32),
                "y": -np.arange(n_docs, dtype=np.float32),
            },
            n_outliers=int((topic_ids < 0).sum()),
        )
    return job_id
