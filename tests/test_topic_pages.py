"""A topic's page and API, the edits a user makes (rename, move a document), search, and assigning new documents,
through the web app on a real database (the assignment's worker side is in test_stages.py)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from shared import assignments
from shared.db import transaction
from shared.queue import ASSIGN
from tests.factories import drain_queue, make_finished_job, make_job
from tests.forms import post_form


@pytest.fixture
def job_id(sessions):
    return make_finished_job(sessions, label="Alpha things")


def test_a_rename_is_shown_everywhere_and_keeps_the_generated_label(client, job_id):
    renamed = client.patch(f"/api/v1/jobs/{job_id}/topics/0", json={"label": "  My   own name "})
    assert renamed.status_code == 200, renamed.json
    body = renamed.json
    assert (body["label"], body["label_source"]) == ("My own name", "custom")
    assert (body["generated_label"], body["generated_label_source"]) == ("Alpha things", "llm")

    topics = {t["topic"]: t for t in client.get(f"/api/v1/jobs/{job_id}/topics").json["topics"]}
    assert topics[0]["label"] == "My own name" and topics[1]["label"] == "Second"
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/jobs/{job_id}/topics.csv").text)))
    assert rows[0]["label"] == "My own name" and rows[0]["label_source"] == "custom"
    assert "My own name" in client.get(f"/jobs/{job_id}").text
    assert {t["topic"]: t["label"] for t in client.get(f"/api/v1/jobs/{job_id}/map").json["topics"]}[0] == "My own name"
    page = client.get(f"/jobs/{job_id}/topics/0").text
    assert "My own name" in page and "Alpha things" in page

    reset = client.patch(f"/api/v1/jobs/{job_id}/topics/0", json={"label": None})
    assert (reset.json["label"], reset.json["label_source"]) == ("Alpha things", "llm")


def test_bad_edits_get_one_line_reasons(client, job_id, sessions):
    too_long = client.patch(f"/api/v1/jobs/{job_id}/topics/0", json={"label": "x" * 201})
    assert too_long.status_code == 400 and too_long.json["error"]["code"] == "invalid_edit"
    assert client.patch(f"/api/v1/jobs/{job_id}/topics/7", json={"label": "x"}).status_code == 404
    assert client.patch(f"/api/v1/jobs/{job_id}/topics/0", json={"name": "x"}).status_code == 400
    assert client.patch(f"/api/v1/jobs/{job_id}/topics/0", data="label").status_code == 400
    assert client.patch(f"/api/v1/jobs/{job_id}/documents/0", json={"topic": 9}).status_code == 404
    assert client.patch(f"/api/v1/jobs/{job_id}/documents/999", json={"topic": 0}).status_code == 404
    assert client.patch(f"/api/v1/jobs/{job_id}/documents/0", json={"topic": -2}).status_code == 400
    unfinished = make_job(sessions)
    not_ready = client.patch(f"/api/v1/jobs/{unfinished}/topics/0", json={"label": "x"})
    assert not_ready.status_code == 409 and not_ready.json["error"]["code"] == "not_ready"
    for response in (too_long, not_ready):
        assert "\n" not in response.json["error"]["message"]


def test_moving_a_document_changes_its_topic_and_the_sizes(client, job_id):
    before = {t["topic"]: t["size"] for t in client.get(f"/api/v1/jobs/{job_id}/topics").json["topics"]}
    # Document 1 is in topic 0 (the factory's topics run -1, 0, 1, -1, 0, 1, ...).
    moved = client.patch(f"/api/v1/jobs/{job_id}/documents/1", json={"topic": 1})
    assert moved.json == {"index": 1, "topic": 1, "previous_topic": 0}
    after = client.get(f"/api/v1/jobs/{job_id}/topics").json
    sizes = {t["topic"]: t["size"] for t in after["topics"]}
    assert sizes == {0: before[0] - 1, 1: before[1] + 1}
    assert client.get(f"/api/v1/jobs/{job_id}/documents?limit=3").json["documents"][1]["topic"] == 1
    listed = client.get(f"/api/v1/jobs/{job_id}/topics/1/documents?limit=100").json
    assert 1 in [d["index"] for d in listed["documents"]] and listed["total"] == sizes[1]
    # To the outliers, with the form a topic page has.
    response = post_form(client, f"/jobs/{job_id}/documents/4/topic", data={"topic": "-1", "back_topic": "0"})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/jobs/{job_id}/topics/0")
    assert client.get(f"/api/v1/jobs/{job_id}/topics").json["n_outliers"] == after["n_outliers"] + 1


def test_the_topic_page_shows_its_representations_and_pages_its_documents(client, sessions):
    job_id = make_finished_job(sessions, n_docs=180)  # topic 0 holds 60 documents: two pages of 50
    page = client.get(f"/jobs/{job_id}/topics/0")
    assert page.status_code == 200
    html = page.text
    for text in ("A label", "alpha, beta", "All 60 documents", "doc 1 text", "next 50"):
        assert text in html, text
    assert "doc 179 text" not in html and "doc 178 text" not in html  # topic 1's, and topic 0's last one
    second = client.get(f"/jobs/{job_id}/topics/0?offset=50").text
    assert "51–60 of 60" in second and "doc 178 text" in second and "doc 179 text" not in second
    assert "previous 50" in second
    renamed = post_form(client, f"/jobs/{job_id}/topics/0/label", data={"label": "Renamed in the form"})
    assert renamed.status_code == 303
    assert "Renamed in the form" in client.get(renamed.headers["Location"]).text
    post_form(client, f"/jobs/{job_id}/topics/0/label", data={"label": "", "reset": "1"})
    assert client.get(f"/api/v1/jobs/{job_id}/topics/0").json["label"] == "A label"
    assert client.get(f"/jobs/{job_id}/topics/5").status_code == 404


def test_search_finds_documents_with_their_topics_and_escapes_them(client, sessions):
    texts = [f"ordinary document {i}" for i in range(20)] + ["<script>alert(1)</script> running foxes"]
    job_id = make_finished_job(sessions, n_docs=21, texts=texts)
    found = client.get(f"/api/v1/jobs/{job_id}/search?q=fox&limit=5").json
    assert found["total"] == 1 and found["results"][0]["index"] == 20
    assert found["results"][0]["topic"] == 1 and found["results"][0]["label"] == "Second"
    assert client.get(f"/api/v1/jobs/{job_id}/search?q=ordinary&limit=5").json["total"] == 20
    indices = client.get(f"/api/v1/jobs/{job_id}/search/indices?q=document").json
    assert indices == {"indices": list(range(20)), "total": 20}
    page = client.get(f"/jobs/{job_id}/search?q=running").text
    assert "1 document match" in page and "<mark>running</mark>" in page
    assert "<script>alert" not in page  # SQLite's snippet escapes it, PostgreSQL's headline drops tags
    bad = client.get(f"/api/v1/jobs/{job_id}/search?q=%22%22")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_query"
    assert client.get(f"/jobs/{job_id}/search?q=%22%22").status_code == 400


def test_assign_answers_202_and_queues_when_no_worker_answers_in_time(client, settings, job_id, sessions, make_app):
    app = make_app(settings.model_copy(update={"assign_wait_seconds": 0.3}))
    api = app.test_client()
    response = api.post(f"/api/v1/jobs/{job_id}/assign", json={"documents": ["a new text", {"text": "another"}]})
    assert response.status_code == 202, response.json
    assert response.json["status"] == "queued" and response.json["assignments"] is None
    location = response.headers["Location"]
    assert drain_queue(settings, ASSIGN) == [response.json["id"]]
    # A worker answers (as AssignRunner does): the poll address now has the topics with their shown labels.
    with transaction(sessions) as session:
        assert assignments.claim(session, response.json["id"], stale_after=timedelta(minutes=1))
        assignments.finish(session, response.json["id"], [1, -1], [0.71, 0.2])
    answer = api.get(location)
    assert answer.status_code == 200
    assert answer.json["assignments"] == [{"topic": 1, "label": "Second", "similarity": 0.71},
                                          {"topic": -1, "label": "", "similarity": 0.2}]


def test_assign_refuses_what_it_cannot_answer(client, settings, job_id, sessions):
    assert client.post(f"/api/v1/jobs/{job_id}/assign", json={"documents": []}).status_code == 400
    assert client.post(f"/api/v1/jobs/{job_id}/assign", json={"documents": ["  "]}).status_code == 400
    many = client.post(f"/api/v1/jobs/{job_id}/assign", json={"documents": ["x"] * (settings.assign_max_documents + 1)})
    assert many.status_code == 400 and many.json["error"]["code"] == "too_many_documents"
    unfinished = make_job(sessions)
    assert client.post(f"/api/v1/jobs/{unfinished}/assign", json={"documents": ["x"]}).status_code == 409
    assert client.get(f"/api/v1/jobs/{job_id}/assign/nope").status_code == 404


def test_a_snippet_is_escaped_around_its_marks():
    from shared.search import MARK_END, MARK_START
    from web.search import highlighted

    snippet = f"<b>a</b> {MARK_START}<i>word</i>{MARK_END} & more"
    assert str(highlighted(snippet)) == "&lt;b&gt;a&lt;/b&gt; <mark>&lt;i&gt;word&lt;/i&gt;</mark> &amp; more"
