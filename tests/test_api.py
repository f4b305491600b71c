"""The JSON API on a real database (SQLite and PostgreSQL) and a real Redis queue."""

import io
import json

import pytest

from shared import jobs
from shared.queue import RUN_JOB
from tests.factories import drain_queue, make_finished_job, make_job

DOCS = [f"document {i} about {'cats and dogs' if i % 2 else 'stocks and bonds'}" for i in range(12)]


def queued_job_ids(settings) -> list[str]:
    return drain_queue(settings, RUN_JOB)


def assert_error(response, status: int, code: str, fragment: str = ""):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert fragment in body["error"]["message"]
    assert "\n" not in body["error"]["message"]


def test_submitting_json_stores_the_job_and_queues_its_id(client, settings, sessions):
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
                              "outlier_threshold": None, "nr_topics": "auto", "generate_labels": True}
    assert response.headers["Location"] == f"/api/v1/jobs/{body['id']}"
    with sessions() as session:
        assert jobs.load_documents(session, body["id"]) == DOCS
    assert queued_job_ids(settings) == [body["id"]]
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
    assert queued_job_ids(settings) == [body["id"]]


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "fragment"),
    [
        ({"json": {"documents": ["only", "three", "docs"]}}, 400, "bad_corpus", "at least 5"),
        ({"json": {"documents": DOCS, "params": {"nr_topics": "lots"}}}, 400, "invalid_request", "params.nr_topics"),
        ({"json": {"documents": DOCS, "params": {"min_topic_size": 1}}}, 400, "invalid_request", "min_topic_size"),
        ({"json": {"docs": DOCS}}, 400, "invalid_request", "documents"),
        ({"json": {"documents": DOCS + ["  "]}}, 400, "bad_corpus", "documents[12] is empty"),
        ({"json": ["not", "an", "object"]}, 400, "invalid_json", "JSON object"),
        ({"data": "{oops", "content_type": "application/json"}, 400, "invalid_json", "JSON object"),
        ({"data": "[" * 100_000, "content_type": "application/json"}, 400, "invalid_json", "JSON object"),
        ({"data": "plain", "content_type": "text/plain"}, 415, "unsupported_media_type", "application/json"),
        ({"data": {"name": "x"}, "content_type": "multipart/form-data"}, 400, "missing_file", "'file'"),
        ({"upload": (b"%PDF", "a.pdf")}, 400, "bad_corpus", ".pdf"),
        ({"upload": (b"\xff\xfe", "a.txt")}, 400, "bad_corpus", "UTF-8"),
    ],
)
def test_bad_submissions_get_a_one_line_4xx_and_queue_nothing(client, settings, sessions, kwargs, status, code, fragment):
    if "upload" in kwargs:  # a fresh file object per run: the test client closes the one it sends
        content, filename = kwargs["upload"]
        kwargs = {"data": {"file": (io.BytesIO(content), filename)}, "content_type": "multipart/form-data"}
    assert_error(client.post("/api/v1/jobs", **kwargs), status, code, fragment)
    assert queued_job_ids(settings) == []
    with sessions() as session:
        assert jobs.count_jobs(session) == 0


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

    page = client.get(f"/api/v1/jobs/{job_id}/documents?offset=28&limit=5").get_json()
    assert page["total"] == 30
    assert page["documents"] == [
        {"index": 28, "topic": 0, "original_topic": 0, "x": 28.0, "y": -28.0},
        {"index": 29, "topic": 1, "original_topic": -1, "x": 29.0, "y": -29.0},  # an outlier that joined topic 1
    ]
    assert [t["theme"] for t in topics["topics"]] == [0, 0]
    themes = client.get(f"/api/v1/jobs/{job_id}/themes").get_json()
    assert themes == {"themes": [{"theme": 0, "label": "Everything", "label_source": "llm", "topics": [0, 1], "size": 20}]}
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["scores"]["diversity"] == 1.0 and job["scores"]["assignment"] == "reduced"

    csv_response = client.get(f"/api/v1/jobs/{job_id}/topics.csv")
    assert "\n1,10,Second,keywords,gamma,,," in csv_response.get_data(as_text=True)
    assert csv_response.mimetype == "text/csv"
    lines = csv_response.get_data(as_text=True).splitlines()
    assert lines[0] == "topic,size,label,label_source,keywords,keybert,mmr,representative_docs"
    assert lines[1].startswith('0,10,Cats & <dogs>,llm,"alpha, beta",a,b,')
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

    body = client.get("/healthz").get_json()
    assert body["database"] == "ok" and body["redis"] == "ok" and body["worker_ready"] is False
    publish_worker_state(redis_client, "topicq@test", {"ready": True}, ttl_seconds=5)
    body = client.get("/healthz").get_json()
    assert body["worker_ready"] is True and body["workers"][0]["hostname"] == "topicq@test"


def test_healthz_is_503_when_redis_is_down(settings, make_app):
    app = make_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["redis"].startswith("error")
