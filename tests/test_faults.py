"""Faults, with real processes: one `topicq up` for the module (a real Celery worker per queue, the web, a real
database) against a Redis the test controls. A worker killed mid-job, every worker down, Redis down, a cancel
during a long stage, a stage out of memory, a worker the kernel kills for memory again and again: no job is lost,
stuck or run twice, and the web keeps answering. The database down: the web alone (`topicq web`, as `topicq up`
runs it) on PostgreSQL through a link the test cuts. (Two simultaneous re-label requests: tests/test_api.py.)

Each test leaves the service as it found it: Redis up, both workers running, no memory limit."""

from __future__ import annotations

import gzip
import html
import json
import logging
import os
import re
import resource
import signal
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from cli.local_service import LocalService, service_env
from cli.redis_server import RedisServer, free_port, start_redis
from shared.db import CONNECT_TIMEOUT_SECONDS, migrate
from shared.models import Document, Job, WorkItem
from shared.queue import worker_states
from shared.settings import Settings
from shared.work import GAVE_UP, MAX_DEATHS
from tests.conftest import DATA, POSTGRES_URL, fresh_database, read_corpus
from tests.faults_support import DatabaseLink

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

CHUNK = 100  # documents per embedding item: a 600-document job embeds in 6 chunks
QUICK = 3.0  # seconds: the most any answer may take while something is down
MEMORY_HEADROOM = 32 * 2**20  # what the CPU worker may still map once limited: a small job fits, 4,000 documents don't
DOWN_FOR_READS = "the job database did not answer; try again"
DOWN_FOR_WRITES = "the job database did not answer; nothing was stored, try again"


class ControlledRedis:
    """The service's Redis, which a test stops and starts again (empty, as after a crash) on the same port."""

    def __init__(self, root: Path) -> None:
        self.root, self.starts = root, 0
        self.server: RedisServer = start_redis(root / "redis-0")
        self.port, self.url = self.server.port, self.server.url

    def stop(self) -> None:
        self.server.stop()

    def start_empty(self) -> None:
        self.starts += 1
        self.server = start_redis(self.root / f"redis-{self.starts}", port=self.port)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def redis_server(workdir):
    server = ControlledRedis(workdir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(redis_server, workdir):
    """`topicq up` on SQLite, what `make run` gives a user (the end-to-end tests and tests/test_stages.py also run
    on PostgreSQL)."""
    env = service_env(workdir / "var", free_port(), f"sqlite:///{workdir / 'topicq.db'}")
    env.update(TOPICQ_REDIS_URL=redis_server.url, TOPICQ_EMBED_CHUNK_DOCUMENTS=str(CHUNK),
               TOPICQ_HEARTBEAT_SECONDS="1", TOPICQ_STALE_AFTER_SECONDS="5", TOPICQ_SWEEP_SECONDS="2")
    up = LocalService(env, workdir / "up.log")
    up.data_dir, up.redis_url = workdir / "var", redis_server.url
    try:
        up.wait_until(lambda: sum(w["ready"] for w in up.get("/api/v1/workers").json()["workers"]) == 2,
                      300, "both workers to load their models")
        yield up
    finally:
        assert up.stop(), "processes of `topicq up` survived SIGTERM to its process group"


@pytest.fixture(scope="module")
def paragraphs():
    return [r["text"] for r in read_corpus("python_docs.jsonl", every=4, limit=600)]


@pytest.fixture(scope="module")
def done_job(service, paragraphs):
    """A small finished job, whose status, page and results the outage tests look at."""
    job_id = submit(service, paragraphs[-60:])
    assert finished(service, job_id)["status"] == "succeeded"
    return job_id


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


def answers_quickly(service, path, within=QUICK, **kwargs):
    started = time.monotonic()
    response = service.get(path, **kwargs)
    took = time.monotonic() - started
    log.info("GET %s: %d in %.3f s", path, response.status_code, took)
    assert took < within, f"GET {path} took {took:.1f} s"
    return response


def still_answers(service, job_id):
    """What a user looks at: a finished job's status, its page and its results, each at once."""
    for path in (f"/api/v1/jobs/{job_id}", f"/jobs/{job_id}", f"/api/v1/jobs/{job_id}/topics",
                 f"/api/v1/jobs/{job_id}/documents?limit=10"):
        response = answers_quickly(service, path)
        assert response.status_code == 200, (path, response.text[:500])
    assert service.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded"


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
    assert "gpu worker exited with code -9 (SIGKILL" in service.log_tail(100_000)
    assert job["attempts"] == 1
    # Each chunk ran to done once, none twice (the database holds one item per stage and chunk).
    stages = {s["stage"]: s for s in job["stages"]}
    assert stages["embed"]["chunks"] == stages["embed"]["chunks_done"] == len(paragraphs) // CHUNK
    assert results(service, job_id) == results(service, undisturbed)
    assert service.get(f"/api/v1/jobs/{job_id}/documents?limit=10000").json()["total"] == len(paragraphs)


def test_while_every_worker_is_down_the_web_answers_and_health_is_degraded(service, done_job, paragraphs):
    frozen = [w["pid"] for w in worker_states(_redis(service))]
    assert len(frozen) == 2
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # no heartbeat: to the web they are gone once their records expire
    try:
        health = service.wait_until(lambda: (r := service.get("/healthz")).json()["workers"] == [] and r, 30,
                                    "the workers' readiness records to expire", every=0.2)
        body = health.json()
        assert health.status_code == 200 and body["status"] == "degraded", body
        assert body["database"] == body["redis"] == "ok" and body["worker_ready"] is False
        assert body["problems"] == ["no ready worker serves the gpu and cpu queues: jobs wait until one is ready"]
        still_answers(service, done_job)
        waiting = submit(service, paragraphs[:60])
        assert answers_quickly(service, f"/api/v1/jobs/{waiting}").json()["status"] == "queued"
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert finished(service, waiting)["status"] == "succeeded"  # the work waited for them, then ran
    service.wait_until(lambda: service.get("/healthz").json()["status"] == "ok", 30, "health to be ok again")


def test_while_redis_is_down_the_web_answers_and_a_job_submitted_then_runs_once_it_is_back(
    service, redis_server, done_job, paragraphs
):
    redis_server.stop()
    try:
        started = time.monotonic()
        job_id = submit(service, paragraphs[:300])  # accepted: the job is in the database
        log.info("POST /api/v1/jobs with Redis down: 202 in %.3f s", time.monotonic() - started)
        assert time.monotonic() - started < QUICK
        health = answers_quickly(service, "/healthz")
        body = health.json()
        assert health.status_code == 200 and body["status"] == "degraded", body
        assert body["database"] == "ok" and body["redis"].startswith("error")
        assert body["problems"] == ["Redis did not answer: jobs are accepted and wait in the database until it is back"]
        still_answers(service, done_job)
        assert answers_quickly(service, f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
        assert answers_quickly(service, "/api/v1/workers").json()["error"]["code"] == "redis_unavailable"
    finally:
        redis_server.start_empty()  # empty: the doorbell is lost
    assert finished(service, job_id)["status"] == "succeeded"


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


def test_a_stage_out_of_memory_fails_its_job_saying_so_and_the_worker_takes_the_next(service):
    summaries = pypi_summaries(4000)  # UMAP's exact neighbours of 4,000 documents: a 61 MiB distance matrix
    assert finished(service, submit(service, summaries[:60]))["status"] == "succeeded"  # the CPU worker has clustered
    (cpu,) = [w for w in worker_states(_redis(service)) if w["queues"] == ["cpu"]]
    # A memory limit on the CPU worker, as `ulimit -d` or systemd's LimitDATA= sets one: allocations past it fail.
    limit = mapped_data(cpu["pid"]) + MEMORY_HEADROOM
    resource.prlimit(cpu["pid"], resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
    try:
        large = finished(service, submit(service, summaries))
        assert large["status"] == "failed"
        assert large["error"].startswith("out of memory while clustering: Unable to allocate "), large["error"]
        assert large["error"].endswith("; give the worker more memory or submit fewer documents")
        assert large["attempts"] == 0  # the worker did not die: nothing was retried
        assert finished(service, submit(service, summaries[60:120]))["status"] == "succeeded"  # still limited
    finally:
        resource.prlimit(cpu["pid"], resource.RLIMIT_DATA, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert [w["pid"] for w in worker_states(_redis(service)) if w["queues"] == ["cpu"]] == [cpu["pid"]]


def test_a_worker_the_kernel_kills_for_memory_again_and_again_fails_the_job_and_then_serves_the_next(
    service, paragraphs
):
    # One embedding item of several seconds (100 articles, up to 4 windows each), so each death lands on it.
    articles = [r["text"] for r in read_corpus("news_sections.jsonl", limit=CHUNK)]
    job_id = submit(service, articles)
    killed: set[int] = set()
    for _death in range(MAX_DEATHS):
        holder = service.wait_until(
            lambda: next((w for w in worker_states(_redis(service))
                          if w["queues"] == ["gpu"] and w["job"] == job_id and w["pid"] not in killed),
                         None), 120, "the gpu worker to take the job's embedding item", every=0.1)
        os.kill(holder["pid"], signal.SIGKILL)  # what the kernel's out-of-memory killer sends
        killed.add(holder["pid"])
    job = finished(service, job_id)
    assert job["status"] == "failed" and job["attempts"] == MAX_DEATHS, job
    assert job["error"] == GAVE_UP.format(stage="embed")
    assert "died 3 times" in job["error"] and "out of memory" in job["error"]
    restarts = service.log_tail(1_000_000).count(
        "gpu worker exited with code -9 (SIGKILL: the kernel's out-of-memory killer, most likely); starting it again")
    assert restarts >= MAX_DEATHS
    assert finished(service, submit(service, paragraphs[60:100]))["status"] == "succeeded"


@pytest.fixture
def web_on_a_cuttable_database(tmp_path):
    """`topicq web` alone (no worker: the web's answers are the point) on a PostgreSQL database of its own,
    reached through a link the test cuts."""
    if not POSTGRES_URL:
        pytest.skip("the database-down test needs PostgreSQL: TOPICQ_TEST_POSTGRES_URL is not set")
    with fresh_database("postgresql", tmp_path) as direct:
        url = make_url(direct)
        link = DatabaseLink(url.port or 5432, url.host or "127.0.0.1")
        migrate(Settings(database_url=direct, data_dir=tmp_path / "var", _env_file=None))
        redis = start_redis(tmp_path / "redis")
        env = service_env(tmp_path / "var", free_port(),
                          url.set(host="127.0.0.1", port=link.port).render_as_string(hide_password=False))
        env["TOPICQ_REDIS_URL"] = redis.url
        web = LocalService(env, tmp_path / "web.log", command=("web",))
        try:
            web.wait_until(lambda: web.get("/healthz").status_code == 200, 60, "the web server")
            web.link, web.direct_url = link, direct
            yield web
        finally:
            web.stop()
            redis.stop()
            link.close()


@pytest.mark.postgres
def test_with_the_database_down_submissions_get_503_reads_answer_at_once_and_nothing_half_written_remains(
    web_on_a_cuttable_database, paragraphs
):
    web = web_on_a_cuttable_database
    accepted = [submit(web, paragraphs[:40])]
    browser = requests.Session()  # the page form, with its session and CSRF token
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(web.base + "/", timeout=30).text)[1]

    web.link.down()  # the database server stopped
    started = time.monotonic()
    response = web.post("/api/v1/jobs", json={"documents": paragraphs[:40], "params": {"generate_labels": False}})
    log.info("POST /api/v1/jobs with the database down: %d in %.3f s", response.status_code, time.monotonic() - started)
    assert time.monotonic() - started < QUICK
    assert response.status_code == 503
    assert response.json() == {"error": {"code": "database_unavailable", "message": DOWN_FOR_WRITES}}
    page = browser.post(web.base + "/jobs", data={"csrf_token": token, "text": "\n".join(paragraphs[:40])}, timeout=30)
    assert page.status_code == 503 and DOWN_FOR_WRITES in html.unescape(page.text)
    for path in (f"/api/v1/jobs/{accepted[0]}", "/api/v1/jobs", f"/api/v1/jobs/{accepted[0]}/topics"):
        response = answers_quickly(web, path)
        assert response.status_code == 503
        assert response.json() == {"error": {"code": "database_unavailable", "message": DOWN_FOR_READS}}
    for path in (f"/jobs/{accepted[0]}", "/"):
        response = answers_quickly(web, path)
        assert response.status_code == 503 and "<h1>Error 503</h1>" in response.text
        assert DOWN_FOR_READS in html.unescape(response.text) and "Traceback" not in response.text
    health = answers_quickly(web, "/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert health.json()["database"].startswith("error") and health.json()["redis"] == "ok"

    web.link.unresponsive()  # a host that takes the connection and never answers: the connect timeout ends it
    response = answers_quickly(web, f"/api/v1/jobs/{accepted[0]}", within=CONNECT_TIMEOUT_SECONDS + QUICK)
    assert response.status_code == 503 and response.json()["error"]["code"] == "database_unavailable"

    web.link.up()  # back, without restarting the web
    assert answers_quickly(web, f"/api/v1/jobs/{accepted[0]}").status_code == 200

    # The database goes away while a large corpus is being stored (after the job's row, among its documents).
    large = [f"{text} ({i})" for i, text in enumerate(paragraphs * 10)]  # 6,000 documents, about 1.4 MB of SQL
    web.link.down_after(300_000)
    response = web.post("/api/v1/jobs", json={"documents": large, "params": {"generate_labels": False}})
    assert response.status_code == 503 and response.json()["error"]["code"] == "database_unavailable"
    web.link.up()
    accepted.append(submit(web, paragraphs[40:80]))

    engine = create_engine(web.direct_url)
    try:
        with Session(engine) as session:
            stored = {
                job.id: (job.n_documents,
                         session.scalar(select(func.count()).select_from(Document).where(Document.job_id == job.id)),
                         session.scalar(select(func.count()).select_from(WorkItem).where(WorkItem.job_id == job.id)))
                for job in session.scalars(select(Job))
            }
    finally:
        engine.dispose()
    assert set(stored) == set(accepted)  # no row of a submission that got a 503
    assert all(n_documents == documents and items == 1 for n_documents, documents, items in stored.values()), stored


def test_with_the_sqlite_database_on_a_volume_that_is_gone_the_api_and_pages_answer_503(tmp_path):
    from web import create_app

    gone = tmp_path / "unmounted" / "topicq.db"  # a data volume that is not there: SQLite cannot open the file
    settings = Settings(data_dir=tmp_path / "var", database_url=f"sqlite:///{gone}", redis_url="redis://127.0.0.1:1/0",
                        _env_file=None)
    app = create_app(settings)
    try:
        client = app.test_client()
        response = client.post("/api/v1/jobs", json={"documents": ["a document"] * 30})
        assert response.status_code == 503
        assert response.get_json() == {"error": {"code": "database_unavailable", "message": DOWN_FOR_WRITES}}
        response = client.get("/api/v1/jobs")
        assert response.status_code == 503
        assert response.get_json() == {"error": {"code": "database_unavailable", "message": DOWN_FOR_READS}}
        page = client.get("/")
        assert page.status_code == 503 and DOWN_FOR_READS in html.unescape(page.get_data(as_text=True))
        health = client.get("/healthz")
        assert health.status_code == 503 and health.get_json()["status"] == "unavailable"
    finally:
        app.extensions["topicq"]["sessions"].kw["bind"].dispose()
    assert not gone.parent.exists()  # nothing was made in its place


def pypi_summaries(n: int) -> list[str]:
    """The first ``n`` one-line package summaries (short documents: cheap to embed)."""
    path = DATA / "pypi_summaries.jsonl.gz"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"corpus {path} is missing: CI must run with ../shared/data beside the checkout")
        pytest.skip(f"corpus {path} is not there")
    texts = []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                return texts
    return texts


def mapped_data(pid: int) -> int:
    """Bytes of a process's private writable memory, what RLIMIT_DATA limits (VmData in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmData:\s+(\d+) kB", status, re.MULTILINE)[1]) * 1024


def _redis(service):
    import redis

    return redis.Redis.from_url(service.redis_url)
