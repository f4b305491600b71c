"""The JSON API on a real database (SQLite and PostgreSQL) and a real Redis queue."""

import io
import json
import threading
import time
from datetime import datetime

import pytest
from sqlalchemy import func, select, update

from shared import jobs, label_runs, work
from shared.db import transaction
from shared.models import Document, JobArray, LabelRun, Theme, Topic, WorkItem
from shared.queue import RELABEL, WORK, publish_worker_state
from shared.storage import LocalArtifactStore, job_prefix
from tests.factories import drain_queue, make_finished_job, make_job

DOCS = [f"document {i} about {'cats and dogs' if i % 2 else 'stocks and bonds'}" for i in range(12)]


def doorbells(settings) -> list[str]:
    """The kinds the waiting doorbells ring for (a submit rings one on the accelerator queue)."""
    return drain_queue(settings, WORK)


def work_items(sessions, job_id: str) -> list[tuple]:
    """A job's work items as ``(stage, chunk, queue, status)``, in the order they were made."""
    with sessions() as session:
        items = session.scalars(select(WorkItem).where(WorkItem.job_id == job_id).order_by(WorkItem.id))
        return [(i.stage, i.chunk, i.queue, i.status) for i in items]


def assert_error(response, status: int, code: str, fragment: str = ""):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert fragment in body["error"]["message"]
    assert "\n" not in body["error"]["message"]


def test_submitting_json_stores_the_job_with_its_first_stage_ready_and_rings(client, settings, sessions):
    response = client.post(
        "/api/v1/jobs",
        json={"name": "pets", "documents": DOCS[:-1] + [{"text": DOCS[-1], "title": "last"}],
              "params": {"min_topic_size": 3, "nr_topics": "auto"}},
    )
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["stage"] == "queued" and body["progress"] == 0
    assert body["n_documents"] == 12 and body["name"] == "pets"
    assert body["params"] == {"min_topic_size": 3, "min_samples": None, "reduce_outliers": True,
                              "outlier_threshold": None, "max_outlier_share": None, "nr_topics": "auto",
                              "generate_labels": True, "label_language": None}
    assert response.headers["Location"] == f"/api/v1/jobs/{body['id']}"
    with sessions() as session:
        assert jobs.load_documents(session, body["id"]) == DOCS
    assert body["priority"] == 0 and body["attempts"] == 0 and body["worker"] is None
    assert body["stages"] == [
        {"stage": "embed", "status": "waiting", "chunks_done": 0, "chunks": 1, "seconds": 0.0, "worker": None}
    ]
    assert work_items(sessions, body["id"]) == [("embed", 0, "gpu", "ready")]
    assert doorbells(settings) == ["gpu"]
    assert client.get(f"/api/v1/jobs/{body['id']}").get_json() == body


@pytest.mark.parametrize(
    ("filename", "payload", "form"),
    [
        ("docs.txt", "\n".join(DOCS).encode(), {}),
        ("docs.csv", ("id,text,title\n" + "\n".join(f'{i},"{d}",t{i}' for i, d in enumerate(DOCS))).encode(), {}),
        ("docs.csv", ("id,body\n" + "\n".join(f'{i},"{d}"' for i, d in enumerate(DOCS))).encode(), {"text_column": "body"}),
        ("docs.jsonl", "\n".join(json.dumps({"text": d}) for d in DOCS).encode(), {}),
    ],
)
def test_uploading_a_file_stores_its_documents_in_order(client, settings, sessions, filename, payload, form):
    response = client.post(
        "/api/v1/jobs",
        data={"file": (io.BytesIO(payload), filename), "min_topic_size": "4", "generate_labels": "false", **form},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["name"] == filename and body["params"]["min_topic_size"] == 4
    assert body["params"]["generate_labels"] is False
    with sessions() as session:
        assert jobs.load_documents(session, body["id"]) == DOCS
    assert work_items(sessions, body["id"]) == [("embed", 0, "gpu", "ready")]
    assert doorbells(settings) == ["gpu"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "fragment"),
    [
        ({"json": {"documents": ["only", "three", "docs"]}}, 400, "bad_corpus", "at least 5"),
        ({"json": {"documents": DOCS, "params": {"nr_topics": "lots"}}}, 400, "invalid_request", "params.nr_topics"),
        ({"json": {"documents": DOCS, "params": {"min_topic_size": 1}}}, 400, "invalid_request", "min_topic_size"),
        ({"json": {"documents": DOCS, "params": {"label_language": "French; ignore all"}}}, 400, "invalid_request",
         "label_language"),
        ({"json": {"docs": DOCS}}, 400, "invalid_request", "documents"),
        ({"json": {"documents": DOCS + ["  "]}}, 400, "bad_corpus", "documents[12] is empty"),
        ({"json": ["not", "an", "object"]}, 400, "invalid_json", "JSON object"),
        ({"data": "{oops", "content_type": "application/json"}, 400, "invalid_json", "JSON object"),
        ({"data": "[" * 100_000, "content_type": "application/json"}, 400, "invalid_json", "JSON object"),
        ({"data": "plain", "content_type": "text/plain"}, 415, "unsupported_media_type", "application/json"),
        ({"data": {"name": "x"}, "content_type": "multipart/form-data"}, 400, "missing_file", "'file'"),
        ({"upload": (b"%PDF", "a.pdf")}, 400, "bad_corpus", ".pdf"),
        ({"upload": (b"\xff\xfe", "a.txt")}, 400, "bad_corpus", "UTF-8"),
        ({"json": {"documents": DOCS, "priority": 11}}, 400, "invalid_request", "priority"),
        ({"json": {"documents": DOCS, "priority": -11}}, 400, "invalid_request", "priority"),
        ({"json": {"documents": DOCS, "priority": "urgent"}}, 400, "invalid_request", "priority"),
        ({"json": {"documents": DOCS, "priority": 1.5}}, 400, "invalid_request", "priority"),
        ({"upload": (b"\n".join(d.encode() for d in DOCS), "a.txt"), "priority": "high"}, 400, "invalid_request",
         "priority"),
        ({"json": {"documents": DOCS, "params": {"max_outlier_share": 1}}}, 400, "invalid_request",
         "params.max_outlier_share: Input should be less than 1"),
        ({"json": {"documents": DOCS, "params": {"max_outlier_share": -0.01}}}, 400, "invalid_request",
         "params.max_outlier_share"),
        ({"json": {"documents": DOCS, "params": {"max_outlier_share": 0.05, "outlier_threshold": 0.2}}}, 400,
         "invalid_request", "params: give max_outlier_share or outlier_threshold, not both"),
        ({"json": {"documents": DOCS, "params": {"max_outlier_share": 0.05, "reduce_outliers": False}}}, 400,
         "invalid_request", "max_outlier_share needs reduce_outliers"),
        ({"upload": (b"\n".join(d.encode() for d in DOCS), "a.txt"), "max_outlier_share": "5"}, 400,
         "invalid_request", "max_outlier_share: Input should be less than 1"),
    ],
)
def test_bad_submissions_get_a_one_line_4xx_and_queue_nothing(client, settings, sessions, kwargs, status, code, fragment):
    if "upload" in kwargs:  # a fresh file object per run: the test client closes the one it sends
        content, filename = kwargs["upload"]
        fields = {k: v for k, v in kwargs.items() if k != "upload"}
        kwargs = {"data": {"file": (io.BytesIO(content), filename), **fields}, "content_type": "multipart/form-data"}
    assert_error(client.post("/api/v1/jobs", **kwargs), status, code, fragment)
    assert doorbells(settings) == []
    with sessions() as session:
        assert jobs.count_jobs(session) == 0


def test_a_target_share_of_outliers_is_accepted_as_json_and_as_a_form_field(client):
    response = client.post("/api/v1/jobs", json={"documents": DOCS, "params": {"max_outlier_share": 0.05}})
    assert response.status_code == 202 and response.get_json()["params"]["max_outlier_share"] == 0.05
    response = client.post("/api/v1/jobs", data={"file": (io.BytesIO("\n".join(DOCS).encode()), "a.txt"),
                                                 "max_outlier_share": "0"}, content_type="multipart/form-data")
    assert response.status_code == 202 and response.get_json()["params"]["max_outlier_share"] == 0


def test_the_cli_sends_a_target_share_of_outliers_as_a_form_field(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import cli.main

    sent = {}

    class Answer:
        status_code = 202

        def json(self):
            return {"id": "j1", "n_documents": 12}

    def request(method, url, **kwargs):
        sent.update(kwargs["data"])
        return Answer()

    monkeypatch.setattr(cli.main.requests, "request", request)
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(DOCS))
    result = CliRunner().invoke(cli.main.cli, ["submit", str(corpus), "--max-outlier-share", "0.05"])
    assert result.exit_code == 0, result.output
    assert sent["max_outlier_share"] == "0.05"
    refused = CliRunner().invoke(cli.main.cli, ["submit", str(corpus), "--max-outlier-share", "1"])
    assert refused.exit_code == 2 and "max-outlier-share" in refused.output


def test_nul_characters_are_dropped_before_they_reach_the_database(client, sessions):
    response = client.post("/api/v1/jobs", json={"name": "a\x00b", "documents": [d + "\x00" for d in DOCS]})
    assert response.status_code == 202 and response.get_json()["name"] == "ab"
    with sessions() as session:
        assert jobs.load_documents(session, response.get_json()["id"]) == DOCS
    assert_error(client.get("/api/v1/jobs/abc%00def"), 404, "not_found")


def test_too_large_a_request_is_413_in_the_error_shape(settings, make_app):
    small = make_app(settings.model_copy(update={"max_upload_mb": 1}))
    response = small.test_client().post("/api/v1/jobs", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert_error(response, 413, "request_entity_too_large", "larger than 1 MiB")


def test_unknown_job_and_route_and_method_use_the_error_shape(client):
    assert_error(client.get("/api/v1/jobs/nope"), 404, "not_found", "no job with id nope")
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.delete("/api/v1/jobs"), 405, "method_not_allowed")
    assert_error(client.get("/api/v1/jobs?limit=zero"), 400, "invalid_parameter", "limit must be an integer")


def test_a_job_with_domains_returns_them_beside_its_themes(client, sessions):
    job_id = make_finished_job(sessions, domain="Knowledge & <culture>")
    body = client.get(f"/api/v1/jobs/{job_id}/themes").get_json()
    assert [t["domain"] for t in body["themes"]] == [0]
    assert body["domains"] == [{"domain": 0, "label": "Knowledge & <culture>", "label_source": "llm", "themes": [0],
                                "size": 20}]
    export = client.get(f"/api/v1/jobs/{job_id}/provenance").get_json()
    assert [(d["domain"], d["label"]) for d in export["domains"]] == [(0, "Knowledge & <culture>")]
    assert export["domains"][0]["provenance"]["answer"]


def test_results_of_an_unfinished_job_are_a_409(client, sessions):
    job_id = make_job(sessions)
    assert_error(client.get(f"/api/v1/jobs/{job_id}/topics"), 409, "not_ready", "queued")
    assert_error(client.get(f"/api/v1/jobs/{job_id}/documents"), 409, "not_ready", "queued")
    assert_error(client.get(f"/api/v1/jobs/{job_id}/themes"), 409, "not_ready", "queued")


def test_topics_and_documents_of_a_finished_job(client, sessions):
    job_id = make_finished_job(sessions, label="Cats & <dogs>")
    topics = client.get(f"/api/v1/jobs/{job_id}/topics").get_json()
    assert topics["n_outliers"] == 10
    assert [t["topic"] for t in topics["topics"]] == [0, 1]
    first = topics["topics"][0]
    assert first["label"] == "Cats & <dogs>" and first["size"] == 10 and first["keywords"] == ["alpha", "beta"]
    assert first["representations"] == {"KeyBERT": ["a"], "MMR": ["b"]}
    assert first["representative_docs"] == ["doc 1 text", "doc 4 text"]
    # Label faithfulness: per topic (None where not scored) and for the job, before and after the re-ask.
    assert [t["faithfulness"] for t in topics["topics"]] == [0.8, None]

    page = client.get(f"/api/v1/jobs/{job_id}/documents?offset=28&limit=5").get_json()
    assert page["total"] == 30
    assert page["documents"] == [
        {"index": 28, "topic": 0, "original_topic": 0, "x": 28.0, "y": -28.0},
        {"index": 29, "topic": 1, "original_topic": -1, "x": 29.0, "y": -29.0},  # an outlier that joined topic 1
    ]
    assert [t["theme"] for t in topics["topics"]] == [0, 0]
    themes = client.get(f"/api/v1/jobs/{job_id}/themes").get_json()
    assert themes == {"themes": [{"theme": 0, "label": "Everything", "label_source": "llm", "topics": [0, 1],
                                  "size": 20, "domain": None}], "domains": []}
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["scores"]["diversity"] == 1.0 and job["scores"]["assignment"] == "reduced"
    assert job["scores"]["label_faithfulness"] == 0.85 and job["scores"]["label_faithfulness_before"] == 0.75

    csv_response = client.get(f"/api/v1/jobs/{job_id}/topics.csv")
    assert "\n1,10,Second,keywords,gamma,,,doc 2 text," in csv_response.get_data(as_text=True).replace("\r", "")
    assert csv_response.mimetype == "text/csv"
    lines = csv_response.get_data(as_text=True).splitlines()
    assert lines[0] == "topic,size,label,label_source,keywords,keybert,mmr,representative_docs,faithfulness"
    assert lines[1].startswith('0,10,Cats & <dogs>,llm,"alpha, beta",a,b,')
    assert csv_response.get_data(as_text=True).replace("\r", "").split("\n1,")[0].endswith(",0.8")
    download = client.get(f"/api/v1/jobs/{job_id}/topics?download=1")
    assert "attachment" in download.headers["Content-Disposition"]


def test_the_csv_never_hands_a_spreadsheet_a_formula(client, sessions):
    job_id = make_finished_job(sessions, label="=HYPERLINK(\"http://x\")")
    rows = client.get(f"/api/v1/jobs/{job_id}/topics.csv").get_data(as_text=True).splitlines()
    assert rows[1].startswith("0,10,\"'=HYPERLINK(")


def test_jobs_are_listed_newest_first(client, sessions):
    ids = [make_job(sessions, name=f"job {i}") for i in range(3)]
    listing = client.get("/api/v1/jobs?limit=2").get_json()
    assert listing["total"] == 3
    assert [j["id"] for j in listing["jobs"]] == [ids[2], ids[1]]


def test_cancelling_a_queued_job_and_then_again(client, sessions):
    job_id = make_job(sessions)
    response = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert_error(client.post(f"/api/v1/jobs/{job_id}/cancel"), 409, "not_cancellable", "cancelled")


def test_healthz_reports_database_redis_and_workers(client, redis_client):
    from shared.queue import publish_worker_state

    response = client.get("/healthz")
    body = response.get_json()
    assert body["database"] == "ok" and body["redis"] == "ok" and body["worker_ready"] is False
    assert response.status_code == 200 and body["status"] == "degraded"  # no worker yet: jobs wait
    assert body["problems"] == ["no ready worker serves the gpu and cpu queues: jobs wait until one is ready"]
    publish_worker_state(redis_client, "topicq@test", {"ready": True}, ttl_seconds=5)
    body = client.get("/healthz").get_json()
    assert body["worker_ready"] is True and body["workers"][0]["hostname"] == "topicq@test"
    assert body["status"] == "ok" and body["problems"] == []


def test_healthz_is_degraded_not_503_when_redis_is_down(settings, make_app):
    app = make_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    response = app.test_client().get("/healthz")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "degraded"  # the database answers: jobs are shown
    assert body["database"] == "ok" and body["redis"].startswith("error")


def test_an_http_error_keeps_its_own_headers_in_the_json_error_shape(client):
    response = client.delete("/healthz")
    assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert response.mimetype == "application/json"


def test_priority_is_stored_and_a_higher_one_runs_first(client, sessions):
    upload = {"file": (io.BytesIO("\n".join(DOCS).encode()), "docs.txt"), "priority": "-3"}
    low = client.post("/api/v1/jobs", data=upload, content_type="multipart/form-data").get_json()
    high = client.post("/api/v1/jobs", json={"documents": DOCS, "priority": 7}).get_json()
    assert (low["priority"], high["priority"]) == (-3, 7)
    listing = client.get("/api/v1/jobs").get_json()["jobs"]
    assert {j["id"]: j["priority"] for j in listing} == {low["id"]: -3, high["id"]: 7}
    with transaction(sessions) as session:  # a worker asks for work: the later, higher-priority job comes first
        assert [item.job_id for item in work.claim(session, "gpu", "gpu@box")] == [high["id"]]
    assert client.get(f"/api/v1/jobs/{high['id']}").get_json()["status"] == "running"
    assert client.get(f"/api/v1/jobs/{low['id']}").get_json()["status"] == "queued"


def test_a_jobs_json_shows_its_worker_its_attempts_and_the_time_of_each_stage(client, sessions):
    job_id = make_job(sessions)
    with transaction(sessions) as session:
        work.claim(session, "gpu", "gpu@a")
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["status"] == "running" and job["worker"] == "gpu@a" and job["attempts"] == 0
    assert job["stages"] == [
        {"stage": "embed", "status": "running", "chunks_done": 0, "chunks": 1, "seconds": 0.0, "worker": "gpu@a"}
    ]

    with transaction(sessions) as session:  # the worker dies under it; another one takes the item over
        work.release(session, worker="gpu@a", died=True)
        [item] = work.claim(session, "gpu", "gpu@b")
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["attempts"] == 1 and job["worker"] == "gpu@b"

    with transaction(sessions) as session:  # embedding done in 12.5 s; clustering waits for a CPU worker
        session.execute(update(WorkItem).where(WorkItem.id == item.id).values(status="done", seconds=12.5))
        work.add_item(session, job_id, "cluster")
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["worker"] is None
    assert job["stages"] == [
        {"stage": "embed", "status": "done", "chunks_done": 1, "chunks": 1, "seconds": 12.5, "worker": "gpu@b"},
        {"stage": "cluster", "status": "waiting", "chunks_done": 0, "chunks": 1, "seconds": 0.0, "worker": None},
    ]


def test_deleting_a_finished_job_removes_its_rows_and_its_artifacts(client, settings, sessions):
    job_id, other = make_finished_job(sessions), make_finished_job(sessions)
    store = LocalArtifactStore(settings.data_dir / "artifacts")
    store.put(job_prefix(job_id) + "embed/0.npy", b"its vectors")
    store.put(job_prefix(other) + "embed/0.npy", b"the other job's vectors")
    assert client.post(f"/api/v1/jobs/{job_id}/labels", json={}).status_code == 202  # a re-label run to go too

    response = client.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 204 and response.get_data() == b""
    assert_error(client.get(f"/api/v1/jobs/{job_id}"), 404, "not_found")
    assert_error(client.delete(f"/api/v1/jobs/{job_id}"), 404, "not_found")
    assert [j["id"] for j in client.get("/api/v1/jobs").get_json()["jobs"]] == [other]
    with sessions() as session:
        left = {t.__tablename__: session.scalar(select(func.count()).select_from(t).where(t.job_id == job_id))
                for t in (Document, Topic, Theme, JobArray, WorkItem, LabelRun)}
    assert set(left.values()) == {0}, left
    assert not (settings.data_dir / "artifacts" / job_prefix(job_id)).exists()
    assert store.get(job_prefix(other) + "embed/0.npy") == b"the other job's vectors"


def test_a_queued_or_running_job_is_deleted_only_once_cancelled(client, sessions):
    job_id = make_job(sessions)
    assert_error(client.delete(f"/api/v1/jobs/{job_id}"), 409, "not_finished", "is queued; cancel it first")
    with transaction(sessions) as session:
        work.claim(session, "gpu", "gpu@box")
    assert_error(client.delete(f"/api/v1/jobs/{job_id}"), 409, "not_finished", "is running; cancel it first")
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert_error(client.delete("/api/v1/jobs/nope"), 404, "not_found", "no job with id nope")


GPU_WORKER = {
    "ready": True, "status": "busy", "queues": ["gpu"], "device": "cuda",
    "labels": {"backend": "transformers", "device": "cuda", "dtype": "bfloat16", "reason": "a CUDA device"},
    "embeddings": "torch", "models": ["all-MiniLM-L6-v2", "Qwen2.5-1.5B-Instruct"], "rss_bytes": 3_500_000_000,
    "job": "3f2c4f55", "stage": "label", "pid": 4242,
}


def test_workers_lists_what_each_worker_published(client, redis_client):
    assert client.get("/api/v1/workers").get_json() == {"workers": []}
    publish_worker_state(redis_client, "gpu@box", GPU_WORKER, ttl_seconds=5)
    publish_worker_state(redis_client, "cpu@box", {"ready": False, "status": "starting", "queues": ["cpu"]}, 5)
    workers = client.get("/api/v1/workers").get_json()["workers"]
    assert [w["hostname"] for w in workers] == ["cpu@box", "gpu@box"]
    starting, gpu = workers
    seen_at = datetime.fromisoformat(gpu.pop("seen_at"))
    assert seen_at.tzinfo is not None and abs(seen_at.timestamp() - time.time()) < 60
    assert gpu == {
        "hostname": "gpu@box", "ready": True, "status": "busy", "queues": ["gpu"], "device": "cuda",
        "models": GPU_WORKER["models"], "labels": GPU_WORKER["labels"], "embeddings": "torch",
        "memory_bytes": 3_500_000_000, "job": "3f2c4f55", "stage": "label",
    }
    assert starting["status"] == "starting" and starting["models"] == [] and starting["memory_bytes"] is None


def test_workers_is_503_when_redis_is_down(settings, make_app):
    app = make_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    assert_error(app.test_client().get("/api/v1/workers"), 503, "redis_unavailable", "Redis did not answer")


def test_two_relabel_requests_at_the_same_moment_make_exactly_one_run(app, settings, sessions):
    job_id = make_finished_job(sessions)
    start = threading.Barrier(2)
    responses = []

    def relabel():
        client = app.test_client()
        start.wait(timeout=10)
        responses.append(client.post(f"/api/v1/jobs/{job_id}/labels", json={}))

    threads = [threading.Thread(target=relabel) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.status_code for r in responses) == [202, 409]
    won = next(r for r in responses if r.status_code == 202).get_json()
    assert_error(next(r for r in responses if r.status_code == 409), 409, "relabel_in_progress")
    with sessions() as session:
        active = session.scalars(
            select(LabelRun.id).where(LabelRun.job_id == job_id, LabelRun.status.in_(("queued", "running")))
        ).all()
    assert active == [won["id"]]
    assert drain_queue(settings, RELABEL) == [won["id"]]


def test_a_relabel_the_in_progress_check_missed_is_refused_by_the_database(client, sessions, monkeypatch):
    """The race above, made certain: the check sees no run, and the one-active-run index refuses the insert."""
    job_id = make_finished_job(sessions)
    first = client.post(f"/api/v1/jobs/{job_id}/labels", json={}).get_json()
    real_check, checks = label_runs.active_run, []

    def misses_once(session, job):
        checks.append(job)
        return None if len(checks) == 1 else real_check(session, job)

    monkeypatch.setattr(label_runs, "active_run", misses_once)
    assert_error(client.post(f"/api/v1/jobs/{job_id}/labels", json={}), 409, "relabel_in_progress")
    assert [r["id"] for r in client.get(f"/api/v1/jobs/{job_id}/labels").get_json()["runs"]] == [first["id"]]
