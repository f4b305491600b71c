"""One job's embedding split across accelerator workers, on a real database (SQLite and PostgreSQL) with the real
embedding model: two StageRunner workers in two threads take different chunks of one job, the chunk finishing
last makes clustering ready exactly once, and the embeddings and topics are those one worker gives."""

import threading
import time

import numpy as np
import pytest
from sqlalchemy import select

from shared import jobs, work
from shared.db import transaction
from shared.models import Job, WorkItem
from shared.storage import LocalArtifactStore, load_array
from tests.factories import make_job
from tests.test_stages import corpus_texts, items_of  # noqa: F401 (the fixture)
from worker import artifacts
from worker.pipeline.progress import overall
from worker.pipeline.run import PipelineConfig
from worker.claims import ChunkProgress, Claim
from worker.stages import Chunking, StageRunner

CHUNKS = Chunking(embed_documents=20, label_topics=8, label_jobs=4, embed_window=4)


def make_runner(sessions, store, embedder, worker, rung):
    return StageRunner(
        factory=sessions, store=store, embedding_model_name="test-model",
        embedding_model_ref="sentence-transformers/all-MiniLM-L6-v2",
        config=PipelineConfig(embedding_batch_size=32), embedder=lambda: embedder, labeler=lambda: None,
        worker=worker, chunking=CHUNKS, heartbeat_seconds=0.2, ring=rung.append,
    )


def embed_until_clustering(runner, sessions, job_id, outcomes, deadline):
    """What a gpu worker does for one job: take its ready chunks until clustering is ready."""
    while time.monotonic() < deadline:
        with sessions() as session:
            if session.scalar(select(WorkItem.id).where(WorkItem.job_id == job_id, WorkItem.stage == "cluster")):
                return
        ran = runner.run_next("gpu")
        outcomes += ran
        if not ran:
            time.sleep(0.02)
    raise AssertionError(f"clustering never became ready: {outcomes}")


class MeetOnce:
    """The real model, whose first encode in each of two threads waits for the other's: both workers are
    embedding chunks of the job at the same time, whatever the scheduler does."""

    def __init__(self, model):
        self.model, self.barrier, self.seen = model, threading.Barrier(2, timeout=60), set()

    def encode(self, texts, **kwargs):
        if threading.get_ident() not in self.seen:
            self.seen.add(threading.get_ident())
            self.barrier.wait()
        return self.model.encode(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_two_workers_share_one_jobs_embedding_and_get_what_one_worker_gets(
        sessions, tmp_path, embedder, corpus_texts, monkeypatch):
    texts = corpus_texts[::3]  # 60 documents: 3 chunks of 20
    store = LocalArtifactStore(tmp_path / "artifacts")
    monkeypatch.setattr(jobs, "READ_BATCH", 7)  # the cache key read in pieces, across texts

    # One worker: the reference. It stops at clustering, so no cache entry exists for the second job to take.
    alone = make_job(sessions, texts, params={"generate_labels": False, "min_topic_size": 5})
    embed_until_clustering(make_runner(sessions, store, embedder, "alone", []), sessions, alone, [],
                           time.monotonic() + 120)
    reference = np.concatenate([load_array(store, artifacts.embedding_chunk_key(alone, c)) for c in range(3)])
    with transaction(sessions) as session:  # its clustering is not needed: out of the CPU worker's way
        jobs.cancel(session, alone)

    job_id = make_job(sessions, texts, params={"generate_labels": False, "min_topic_size": 5})
    model, rung, outcomes = MeetOnce(embedder), [], []
    runners = [make_runner(sessions, store, model, f"gpu-{k}", rung) for k in range(2)]
    deadline = time.monotonic() + 120
    threads = [threading.Thread(target=embed_until_clustering, args=(r, sessions, job_id, outcomes, deadline))
               for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == [f"job {job_id} embed {c}: done" for c in range(3)]  # each chunk once, none failed
    with sessions() as session:
        embed_items = list(session.scalars(select(WorkItem).where(WorkItem.job_id == job_id,
                                                                  WorkItem.stage == "embed")))
        key = jobs.get_job(session, job_id).embedding_key
    assert {i.worker for i in embed_items} == {"gpu-0", "gpu-1"}
    assert [s for s in items_of(sessions, job_id) if s[0] == "cluster"] == [("cluster", 0, "ready")]
    assert rung.count("cpu") == 1  # clustering was made ready, and rung for, once
    # The key, read 7 texts at a time, is the one the whole list gives: existing cache entries stay valid.
    assert key == artifacts.embedding_key("test-model", PipelineConfig().embedding_windows, texts)

    clusterer = make_runner(sessions, store, embedder, "cpu", [])
    assert clusterer.run_next("cpu") == [f"job {job_id} cluster 0: done"]
    assert clusterer.run_next("cpu") == [f"job {job_id} save 0: done"]
    np.testing.assert_allclose(load_array(store, key), reference, atol=1e-6)
    assert not (tmp_path / "artifacts" / "jobs" / job_id / "embedding").exists()  # its chunks went with assembly
    with sessions() as session:
        assert jobs.get_job(session, job_id).status == "succeeded"
        assert jobs.load_array(session, job_id, "topic").shape == (len(texts),)


def test_of_two_last_chunks_finishing_at_once_exactly_one_makes_clustering_ready(sessions):
    """The first transaction holds its commit back while the second finishes: without the job-row lock, each
    would count the other's chunk as running on PostgreSQL and clustering would never be ready."""
    job_id = make_job(sessions)
    with transaction(sessions) as session:
        (first,) = work.claim(session, "gpu", "gpu-0")
        assert work.plan_embedding(session, job_id, "embeddings/k.npy", chunks=2, window=2)
    with transaction(sessions) as session:
        (second,) = work.claim(session, "gpu", "gpu-1")
    assert (first.chunk, second.chunk) == (0, 1)
    made, first_counted = {}, threading.Event()

    def finish(name, item, hold):
        with transaction(sessions) as session:
            made[name] = work.complete_chunk(session, item, 1.0)
            if hold:
                first_counted.set()
                time.sleep(0.5)  # committed only now, while the other worker counts

    early = threading.Thread(target=finish, args=("first", first, True))
    early.start()
    assert first_counted.wait(10)
    finish("second", second, False)
    early.join()
    assert made == {"first": [], "second": [("cluster", 0)]}
    assert items_of(sessions, job_id)[-1] == ("cluster", 0, "ready")


def test_a_small_job_waits_behind_at_most_the_window_of_a_large_jobs_chunks(sessions):
    """With all 10 chunks of the large job ready at once, the younger small job would wait for all of them."""
    large = make_job(sessions, name="large")
    with transaction(sessions) as session:
        (chunk0,) = work.claim(session, "gpu", "gpu-0")
        work.plan_embedding(session, large, "embeddings/large.npy", chunks=10, window=2)
    small = make_job(sessions, name="small")  # submitted while the large job embeds
    time.sleep(0.01)  # SQLite's clock counts milliseconds: the chunk finishes after the submission, not with it
    with transaction(sessions) as session:
        assert work.complete_chunk(session, chunk0, 1.0) == [("embed", 2)]
    order = []
    for _ in range(3):  # one worker, taking and finishing the fairest ready item each time
        with transaction(sessions) as session:
            in_flight = session.scalars(select(WorkItem.chunk).where(
                WorkItem.job_id == large, WorkItem.status.in_(("ready", "running")))).all()
            assert len(in_flight) <= 2
            (item,) = work.claim(session, "gpu", "gpu-0")
            order.append(("large" if item.job_id == large else "small", item.chunk))
        with transaction(sessions) as session:
            work.complete_chunk(session, item, 1.0)
    assert order == [("large", 1), ("small", 0), ("large", 2)]


def test_embedding_progress_never_goes_back_while_chunks_finish_in_any_order(sessions):
    """Chunks 0 and 2 of four (100 documents each) embed at once; each worker writes what it knows."""
    job_id = make_job(sessions, [f"document {i} of the corpus" for i in range(400)])
    with transaction(sessions) as session:
        (chunk0,) = work.claim(session, "gpu", "gpu-0")
        work.plan_embedding(session, job_id, "embeddings/k.npy", chunks=4, window=4)
    with transaction(sessions) as session:
        work.claim(session, "gpu", "gpu-1")  # chunk 1: taken, not reporting yet
        (chunk2,) = work.claim(session, "gpu", "gpu-2")
    seen = []
    with Claim(sessions, [chunk0, chunk2], 0.2) as claim:
        progress = {c: ChunkProgress(sessions, claim, job_id, work.ChunkPlan(400, 4)) for c in (0, 2)}

        def report(chunk, done):
            progress[chunk].interval = 0  # every report is written
            progress[chunk]("embedding", done, 100)
            with sessions() as session:
                seen.append(session.get(Job, job_id).progress)

        report(2, 80)  # the later chunk runs ahead
        report(0, 10)  # the earlier one is behind: the job stays at 80 documents' worth
        with transaction(sessions) as session:
            work.complete_chunk(session, chunk2, 1.0)
        report(0, 30)  # 100 (chunk 2, done) + 30
        report(0, 100)
    assert seen == sorted(seen)
    assert seen[:2] == [pytest.approx(overall("embedding", 80, 400), abs=1e-4)] * 2
    assert seen[2:] == [pytest.approx(overall("embedding", n, 400), abs=1e-4) for n in (130, 200)]


def test_chunk_plans_cover_every_document_once_and_the_cache_key_keeps_its_value():
    for documents, chunks in [(60, 3), (61, 3), (5, 5), (595_905, 298), (1, 1)]:
        plan = work.ChunkPlan(documents, chunks)
        spans = [plan.bounds(c) for c in range(chunks)]
        assert spans[0][0] == 0 and spans[-1][1] == documents
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and all(stop > start for start, stop in spans)
    # The digest an entry made before chunked reading was stored under: reading in pieces must not change it.
    assert artifacts.embedding_key("all-MiniLM-L6-v2", 4, iter(["first text", "second"])) == (
        "embeddings/caed764862cf0ec811df583afc5a63be341b86f9de93899334405fb0beb80b34.npy")
