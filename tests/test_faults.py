"""Faults, with real processes: `topicq up` (a real Celery worker per queue, the web, a real database) against a
Redis the test controls. A worker killed mid-job, Redis down at submit, a cancel during a long stage: no job is
lost, stuck or run twice. (Two simultaneous re-label requests: tests/test_api.py.)"""

from __future__ import annotations

import os
import signal
import time

import pytest

from cli.local_service import LocalService, service_env
from cli.redis_server import free_port, start_redis
from shared.queue import worker_states
from tests.conftest import read_corpus

pytestmark = pytest.mark.e2e

CHUNK = 100  # documents per embedding item: a 600-document job embeds in 6 chunks


@pytest.fixture
def database_url(tmp_path):
    """SQLite, what `make run` gives a user (the end-to-end tests and tests/test_stages.py also run on PostgreSQL;
    three service starts a database would add minutes to the suite for no path of its own)."""
    return f"sqlite:///{tmp_path / 'topicq.db'}"


@pytest.fixture
def redis_server(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def service(database_url, redis_server, tmp_path):
    env = service_env(tmp_path / "var", free_port(), database_url)
    env.update(TOPICQ_REDIS_URL=redis_server.url, TOPICQ_EMBED_CHUNK_DOCUMENTS=str(CHUNK),
               TOPICQ_HEARTBEAT_SECONDS="1", TOPICQ_STALE_AFTER_SECONDS="5", TOPICQ_SWEEP_SECONDS="2")
    up = LocalService(env, tmp_path / "up.log")
    up.data_dir, up.redis_url = tmp_path / "var", redis_server.url
    try:
        up.wait_until(lambda: sum(w["ready"] for w in up.get("/api/v1/workers").json()["workers"]) == 2,
                      300, "both workers to load their models")
        yield up
    finally:
        assert up.stop(), "processes of `topicq up` survived SIGTERM to its process group"


@pytest.fixture(scope="module")
def paragraphs():
    return [r["text"] for r in read_corpus("python_docs.jsonl", every=4, limit=600)]


def submit(service, texts, **params):
    response = service.post("/api/v1/jobs", json={"documents": texts, "params": {"generate_labels": False, **params}})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def finished(service, job_id, timeout=300):
    return service.wait_until(
        lambda: (job := service.get(f"/api/v1/jobs/{job_id}").json())["status"] in ("succeeded", "failed", "cancelled")
        and job, timeout, f"job {job_id} to finish", every=0.3)


def embed_stage(service, job_id):
    stages = {s["stage"]: s for s in service.get(f"/api/v1/jobs/{job_id}").json()["stages"]}
    return stages.get("embed")


def results(service, job_id):
    topics = service.get(f"/api/v1/jobs/{job_id}/topics").json()
    docs = service.get(f"/api/v1/jobs/{job_id}/documents?limit=10000").json()
    return ([(t["size"], t["keywords"]) for t in topics["topics"]], [d["topic"] for d in docs["documents"]])


def test_a_worker_killed_mid_embedding_is_restarted_and_the_job_resumes_with_the_same_topics(service, paragraphs):
    undisturbed = submit(service, paragraphs, min_topic_size=10)
    assert finished(service, undisturbed)["status"] == "succeeded"
    for cached in (service.data_dir / "artifacts" / "embeddings").glob("*.npy"):
        cached.unlink()  # so the second job embeds again instead of taking the cache

    job_id = submit(service, paragraphs, min_topic_size=10)
    service.wait_until(lambda: (s := embed_stage(service, job_id)) and s["chunks_done"] >= 1 and s["status"] == "running",
                       120, "the job to be half-way through embedding", every=0.1)
    (gpu,) = [w for w in worker_states(_redis(service)) if w["queues"] == ["gpu"]]
    os.kill(gpu["pid"], signal.SIGKILL)
    killed_at = time.monotonic()

    # The web stays up while the supervisor starts the worker again.
    assert service.get("/api/v1/jobs").status_code == 200
    job = finished(service, job_id)
    assert job["status"] == "succeeded", job
    assert time.monotonic() - killed_at < 180
    assert "gpu worker exited with code -9; starting it again" in service.log_tail(100_000)
    assert job["attempts"] == 1
    # Each chunk ran to done once, none twice (the database holds one item per stage and chunk).
    stages = {s["stage"]: s for s in job["stages"]}
    assert stages["embed"]["chunks"] == stages["embed"]["chunks_done"] == len(paragraphs) // CHUNK
    assert results(service, job_id) == results(service, undisturbed)
    assert service.get(f"/api/v1/jobs/{job_id}/documents?limit=10000").json()["total"] == len(paragraphs)


def test_a_job_submitted_while_redis_is_down_runs_once_redis_is_back(service, redis_server, paragraphs, tmp_path):
    redis_server.stop()
    job_id = submit(service, paragraphs[:300])  # accepted: the job is in the database
    assert service.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
    time.sleep(3)
    restarted = start_redis(tmp_path / "redis-again", port=redis_server.port)  # empty: the doorbell is lost
    try:
        assert finished(service, job_id)["status"] == "succeeded"
    finally:
        restarted.stop()


def test_cancelling_during_embedding_stops_the_job_within_one_chunk(service, paragraphs):
    job_id = submit(service, paragraphs[::-1])  # other documents than the cache holds
    service.wait_until(lambda: (s := embed_stage(service, job_id)) and s["chunks_done"] >= 1, 120,
                       "the first chunk", every=0.1)
    assert service.post(f"/api/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    done_then = embed_stage(service, job_id)["chunks_done"]
    service.wait_until(lambda: all(w["job"] is None for w in service.get("/api/v1/workers").json()["workers"]),
                       30, "the worker to let go of the cancelled job", every=0.2)
    time.sleep(3)  # nothing picks it up again
    job = service.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert embed_stage(service, job_id)["chunks_done"] <= done_then + 1 < len(paragraphs) // CHUNK
    assert service.get(f"/api/v1/jobs/{job_id}/topics").status_code == 409


def _redis(service):
    import redis

    return redis.Redis.from_url(service.redis_url)
