"""The job runner on a real database with the real embedding model (labels from a scripted labeler here;
the end-to-end test uses the real LLM)."""

import numpy as np
import pytest

from shared import jobs
from shared.db import transaction
from shared.settings import Settings
from shared.storage import LocalArtifactStore
from tests.conftest import read_corpus
from tests.factories import make_job
from worker.pipeline.run import PipelineConfig
from worker.runner import USER_SAFE_ERROR, JobRunner


@pytest.fixture(scope="session")
def corpus_texts():
    """180 Python-docs paragraphs from three distinct chapters."""
    records = read_corpus("python_docs.jsonl")
    chapters = ("Internet Protocols and Support", "Numeric and Mathematical Modules", "File and Directory Access")
    texts = []
    for chapter in chapters:
        texts += [r["text"] for r in records if r["label"] == chapter and len(r["text"].split()) >= 12][:60]
    return texts


class ScriptedLabeler:
    """Answers like a chatty LLM would; records what it was asked."""

    name = "scripted"

    def __init__(self):
        self.conversations = []

    def generate(self, conversations, on_progress=None):
        self.conversations += conversations
        answers = [f'Label: "Topic number {i}".\nBecause...' for i in range(len(conversations))]
        if answers:
            answers[-1] = "   "  # nothing usable: falls back to keywords
        if on_progress:
            on_progress(len(conversations))
        return answers


def make_runner(sessions, tmp_path, embedder, labeler=None):
    return JobRunner(
        factory=sessions,
        store=LocalArtifactStore(tmp_path / "artifacts"),
        embedding_model_name="test-model",
        config=PipelineConfig(embedding_batch_size=32, doc_tokens=40),
        models=lambda: (embedder, labeler),
    )


def test_a_job_runs_to_topics_labels_and_document_results(sessions, tmp_path, embedder, corpus_texts):
    labeler = ScriptedLabeler()
    job_id = make_job(sessions, corpus_texts, params={"min_topic_size": 10})
    assert make_runner(sessions, tmp_path, embedder, labeler).run(job_id) == "succeeded"

    with sessions() as session:
        job = jobs.get_job(session, job_id)
        topics = jobs.topics_of(session, job_id)
        doc_topics = jobs.load_array(session, job_id, "topic")
        original = jobs.load_array(session, job_id, "topic_original")
        xs = jobs.load_array(session, job_id, "x")
        themes = jobs.themes_of(session, job_id)
    assert job.status == "succeeded" and job.stage == "done" and job.progress == 1.0
    assert job.started_at is not None and job.finished_at is not None
    assert len(topics) >= 3 and job.n_topics == len(topics)
    assert len(doc_topics) == len(corpus_texts) == len(xs) and np.isfinite(xs).all()
    assert job.n_outliers == int((doc_topics == -1).sum())
    # Outlier reduction moved only outliers, and the job says so in its scores.
    assert ((original == doc_topics) | (original == -1)).all()
    assert job.scores["outliers_reassigned"] == int(((original == -1) & (doc_topics >= 0)).sum())
    assert job.scores["outlier_share"] == pytest.approx(job.n_outliers / len(corpus_texts), abs=1e-4)
    assert 0 < job.scores["diversity"] <= 1 and -1 <= job.scores["coherence_npmi"] <= 1
    # Themes group the topics when there are enough of them.
    if len(topics) >= 8:
        assert sorted(t for theme in themes for t in theme.topics) == [t.topic for t in topics]
        assert all(t.theme is not None for t in topics)
    else:
        assert themes == [] and all(t.theme is None for t in topics)
    for topic in topics:
        assert topic.size == int((doc_topics == topic.topic).sum())
        assert len(topic.keywords) == 10 and len(topic.representations["KeyBERT"]) > 0 and topic.representations["MMR"]
        assert 1 <= len(topic.representative_docs) <= 5
        assert all(doc_topics[i] == topic.topic for i in topic.representative_docs)
    # Labels: cleaned LLM answers, the unusable one replaced by keywords and marked so.
    assert [t.label for t in topics[:-1]] == [f"Topic number {i}" for i in range(len(topics) - 1)]
    assert topics[-1].label_source == "keywords" and topics[-1].label == ", ".join(topics[-1].keywords[:4])
    # Each prompt carried that topic's keywords.
    assert all(", ".join(t.keywords) in c[-1]["content"] for t, c in zip(topics, labeler.conversations))


def test_same_documents_reuse_their_embeddings(sessions, tmp_path, embedder, corpus_texts, monkeypatch):
    runner = make_runner(sessions, tmp_path, embedder)
    first = make_job(sessions, corpus_texts, params={"generate_labels": False})
    assert runner.run(first) == "succeeded"
    assert len(list((tmp_path / "artifacts" / "embeddings").glob("*.npy"))) == 1

    import worker.pipeline.run as run_module

    def must_not_embed(*_args, **_kwargs):
        raise AssertionError("embeddings were computed again")

    monkeypatch.setattr(run_module, "embed", must_not_embed)
    second = make_job(sessions, corpus_texts, params={"generate_labels": False, "min_topic_size": 20})
    assert runner.run(second) == "succeeded"


def test_sizes_beyond_the_corpus_give_at_most_one_topic_instead_of_failing(sessions, tmp_path, embedder, corpus_texts):
    job_id = make_job(sessions, corpus_texts[:60],
                      params={"min_topic_size": 5000, "min_samples": 5000, "nr_topics": "auto", "generate_labels": False})
    assert make_runner(sessions, tmp_path, embedder).run(job_id) == "succeeded"
    with sessions() as session:
        assert len(jobs.topics_of(session, job_id)) <= 1


def test_a_cancelled_job_never_starts(sessions, tmp_path):
    job_id = make_job(sessions)
    with transaction(sessions) as session:
        assert jobs.cancel(session, job_id)

    def no_models():
        raise AssertionError("a cancelled job must not reach the models")

    runner = make_runner(sessions, tmp_path, None)
    runner.models = no_models
    assert runner.run(job_id) == "skipped"
    with sessions() as session:
        assert jobs.get_job(session, job_id).status == "cancelled"


def test_a_redelivered_job_runs_only_once(sessions, tmp_path, embedder, corpus_texts):
    job_id = make_job(sessions, corpus_texts[:60], params={"generate_labels": False})
    runner = make_runner(sessions, tmp_path, embedder)
    assert runner.run(job_id) == "succeeded"
    assert runner.run(job_id) == "skipped"


def test_a_failing_job_is_marked_failed_with_a_user_safe_message(sessions, tmp_path):
    class BrokenEmbedder:
        max_seq_length, tokenizer = 256, None  # no tokenizer: each document is one piece

        def encode(self, *_args, **_kwargs):
            raise RuntimeError("CUDA error: secret internal detail at /home/op/model.py:12")

    job_id = make_job(sessions)
    assert make_runner(sessions, tmp_path, BrokenEmbedder()).run(job_id) == "failed"
    with sessions() as session:
        job = jobs.get_job(session, job_id)
    assert job.status == "failed" and job.error == USER_SAFE_ERROR and job.finished_at is not None


def test_cancelling_a_running_job_stops_it_without_results(sessions, tmp_path, embedder, corpus_texts):
    job_id = make_job(sessions, corpus_texts)

    class CancelMidway:
        """Embeds for real, but the user cancels after the first batch."""

        def encode(self, texts, **kwargs):
            with transaction(sessions) as session:
                jobs.cancel(session, job_id)
            return embedder.encode(texts, **kwargs)

        def __getattr__(self, name):  # the rest (tokenizer, max_seq_length) is the real model's
            return getattr(embedder, name)

    assert make_runner(sessions, tmp_path, CancelMidway()).run(job_id) == "cancelled"
    with sessions() as session:
        assert jobs.get_job(session, job_id).status == "cancelled"
        assert jobs.topics_of(session, job_id) == []


def test_a_job_orphaned_by_a_dead_worker_is_taken_over_but_a_live_one_is_not(sessions, tmp_path, embedder, corpus_texts):
    from datetime import timedelta

    from sqlalchemy import update

    from shared.models import Job, utcnow

    job_id = make_job(sessions, corpus_texts[:60], params={"generate_labels": False})
    with transaction(sessions) as session:
        assert jobs.claim(session, job_id, timedelta(minutes=1))  # a worker took it...
    runner = make_runner(sessions, tmp_path, embedder)
    assert runner.run(job_id) == "skipped"  # ...and is alive: a re-delivery leaves it alone
    with transaction(sessions) as session:  # ...then that worker died two minutes ago
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(minutes=2)))
    assert runner.run(job_id) == "succeeded"


def test_a_job_that_kills_its_worker_three_times_fails_instead_of_looping(sessions, tmp_path):
    from datetime import timedelta

    from sqlalchemy import update

    from shared.models import Job, utcnow

    job_id = make_job(sessions)
    for _ in range(jobs.MAX_ATTEMPTS):  # each time a worker claims it and dies mid-job
        with transaction(sessions) as session:
            assert jobs.claim(session, job_id, timedelta(minutes=1))
            session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    runner = make_runner(sessions, tmp_path, None)
    runner.models = lambda: (_ for _ in ()).throw(AssertionError("must not run again"))
    assert runner.run(job_id) == "skipped"
    with sessions() as session:
        job = jobs.get_job(session, job_id)
    assert job.status == "failed" and job.error == jobs.GAVE_UP and job.attempts == jobs.MAX_ATTEMPTS
