"""/metrics: the Prometheus text format read from the real database and Redis at scrape time, and who may read it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from shared import jobs, users, work
from shared.db import transaction
from shared.models import WorkItem
from shared.queue import publish_worker_state, ring
from tests.factories import finish_job, make_job


@pytest.fixture
def metrics_settings(settings):
    # One topic a label chunk, so that two topics make two label chunks and the theme chunk a third.
    return settings.model_copy(update={"label_chunk_topics": 1})


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by (name, sorted labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


def finish_items(sessions, job_id: str, stage: str, chunks, seconds: float, ago: timedelta = timedelta()) -> None:
    """Items ``stage``/``chunks`` of a job done, each having taken ``seconds``, finished ``ago`` (database clock)."""
    with transaction(sessions) as session:
        now = work.db_now(session)
        for chunk in chunks:
            work.add_item(session, job_id, stage, chunk)
            session.execute(update(WorkItem)
                            .where(WorkItem.job_id == job_id, WorkItem.stage == stage, WorkItem.chunk == chunk)
                            .values(status="done", seconds=seconds, finished_at=now - ago, worker="w"))


def test_metrics_count_jobs_queues_stage_times_throughput_and_worker_memory(metrics_settings, make_app, sessions,
                                                                             redis_client):
    app = make_app(metrics_settings)
    # A running job: 25 documents split evenly into three embedding chunks (8, 8, 9 documents, as
    # shared.work.ChunkPlan splits them); two took 2 s each just now, the last 2 s an hour ago; a CPU worker is
    # clustering it.
    running = make_job(sessions, [f"running document {i}" for i in range(25)])
    finish_items(sessions, running, "embed", range(2), 2.0)
    finish_items(sessions, running, "embed", [2], 2.0, ago=timedelta(hours=1))
    with transaction(sessions) as session:
        work.add_item(session, running, "cluster")
        assert [i.stage for i in work.claim(session, "cpu", "topicq-cpu@box")] == ["cluster"]
    # A finished job of two topics: its labels (a chunk per topic, then the theme chunk) took 0.5 s each just
    # now; its embedding took 1 s an hour ago, outside the throughput window.
    done = finish_job(sessions, make_job(sessions, [f"finished document {i}" for i in range(25)]), 25)
    finish_items(sessions, done, "label", range(3), 0.5)
    finish_items(sessions, done, "embed", [0], 1.0, ago=timedelta(hours=1))
    queued = [make_job(sessions) for _ in range(2)]
    failed, cancelled = make_job(sessions), make_job(sessions)
    with transaction(sessions) as session:
        work.add_item(session, queued[0], "embed", 1, status="planned")  # a chunk not yet let into the queue
        jobs.fail(session, failed, "boom")
        jobs.cancel(session, cancelled)
    ring(app.extensions["topicq"]["celery"], "gpu", times=2)
    publish_worker_state(redis_client, "topicq-gpu@gpu1", {"ready": True, "queues": ["gpu"], "rss_bytes": 3 << 30},
                         ttl_seconds=30)
    publish_worker_state(redis_client, "topicq-cpu@box", {"ready": False, "queues": ["cpu"], "rss_bytes": 5 << 20},
                         ttl_seconds=30)

    client = app.test_client()
    body = client.get("/metrics").get_data(as_text=True)
    for job_id in (running, done, failed, cancelled, *queued):
        assert job_id not in body  # which jobs exist is their owners' business
    m = scrape(client)

    assert {s: m[("topicq_jobs", (("status", s),))] for s in ("queued", "running", "succeeded", "failed",
                                                              "cancelled")} == \
        {"queued": 2, "running": 1, "succeeded": 1, "failed": 1, "cancelled": 1}
    # The failed and cancelled jobs' embed items are never claimed: not counted as waiting.
    items = {(q, s): m[("topicq_work_items", (("queue", q), ("state", s)))] for q in ("gpu", "cpu")
             for s in ("planned", "ready", "running")}
    assert items == {("gpu", "planned"): 1, ("gpu", "ready"): 2, ("gpu", "running"): 0,
                     ("cpu", "planned"): 0, ("cpu", "ready"): 0, ("cpu", "running"): 1}
    assert m[("topicq_queue_messages", (("queue", "gpu"),))] == 2
    assert m[("topicq_queue_messages", (("queue", "cpu"),))] == 0

    # Embed items: three of 2 s and the finished job's 1 s one (the factory's cluster/save took 1 s each).
    assert m[("topicq_work_item_seconds_count", (("stage", "embed"),))] == 4
    assert m[("topicq_work_item_seconds_sum", (("stage", "embed"),))] == 7.0
    assert m[("topicq_work_item_seconds_bucket", (("le", "1.0"), ("stage", "embed")))] == 1
    assert m[("topicq_work_item_seconds_bucket", (("le", "2.5"), ("stage", "embed")))] == 4
    assert m[("topicq_work_item_seconds_bucket", (("le", "+Inf"), ("stage", "label")))] == 3
    assert m[("topicq_work_item_seconds_count", (("stage", "cluster"),))] == 1  # the running one has no time yet

    # 16 documents in the window's 4 s of embedding; 2 topics in the 1 s their two chunks took (the theme chunk
    # labels no topic).
    assert m[("topicq_embedding_documents_per_second", ())] == pytest.approx(16 / 4)
    assert m[("topicq_label_topics_per_second", ())] == pytest.approx(2.0)

    assert m[("topicq_worker_rss_bytes", (("queues", "gpu"), ("worker", "topicq-gpu@gpu1")))] == 3 << 30
    assert m[("topicq_worker_ready", (("queues", "cpu"), ("worker", "topicq-cpu@box")))] == 0
    assert m[("topicq_workers_ready", (("queue", "gpu"),))] == 1
    assert m[("topicq_workers_ready", (("queue", "cpu"),))] == 0
    assert m[("topicq_database_up", ())] == 1 and m[("topicq_redis_up", ())] == 1


def test_with_accounts_on_only_an_admins_token_reads_the_metrics(settings, make_app, sessions, redis_client):
    app = make_app(settings.model_copy(update={"auth": "token"}))
    with transaction(sessions) as session:
        alice = users.add_user(session, "alice")[1]
        root = users.add_user(session, "root", admin=True)[1]
    client = app.test_client()

    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401  # not the login page's redirect: a scraper cannot sign in
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer tq_wrong"}).status_code == 401
    not_admin = client.get("/metrics", headers={"Authorization": f"Bearer {alice}"})
    assert not_admin.status_code == 404 and not_admin.get_json()["error"]["code"] == "not_found"
    assert scrape(client, Authorization=f"Bearer {root}")[("topicq_jobs", (("status", "queued"),))] == 0


def test_without_redis_the_database_figures_still_come(settings, make_app, sessions):
    from cli.redis_server import free_port

    app = make_app(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}))
    make_job(sessions)
    m = scrape(app.test_client())
    assert m[("topicq_redis_up", ())] == 0
    assert m[("topicq_jobs", (("status", "queued"),))] == 1
    assert m[("topicq_work_items", (("queue", "gpu"), ("state", "ready")))] == 1
    assert not any(name == "topicq_queue_messages" for name, _ in m)
