"""The document map's endpoints on a real database (SQLite and PostgreSQL): metadata, the binary points, one
document, and the vendored plotly.js."""

import hashlib
import re

import numpy as np
import pytest
from flask import render_template
from sqlalchemy import update

from shared import jobs
from shared.db import transaction
from shared.models import JobArray, Topic
from tests.factories import make_finished_job, make_job

PLOTLY_STRICT_SHA256 = "4ac841837b31c1bfd2ab140e3a248ddcc6c2106978fbf2c1c18a7aada930a37a"


def stored(sessions, job_id: str) -> dict[str, np.ndarray]:
    with sessions() as session:
        return {name: jobs.load_array(session, job_id, name) for name in ("x", "y", "topic")}


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["message"] and "\n" not in body["error"]["message"]


def test_map_metadata_places_each_label_at_the_median_of_its_documents(client, sessions):
    job_id = make_finished_job(sessions, n_docs=31)
    arrays = stored(sessions, job_id)
    response = client.get(f"/api/v1/jobs/{job_id}/map")
    assert response.status_code == 200
    body = response.get_json()
    assert body["n"] == 31
    assert body["points"] == f"/api/v1/jobs/{job_id}/map/points"
    assert body["bounds"] == {"x": [float(arrays["x"].min()), float(arrays["x"].max())],
                              "y": [float(arrays["y"].min()), float(arrays["y"].max())]}
    assert [t["topic"] for t in body["topics"]] == [0, 1]
    for t in body["topics"]:
        members = arrays["topic"] == t["topic"]
        assert t["size"] == int(members.sum())
        assert t["x"] == pytest.approx(float(np.median(arrays["x"][members])))
        assert t["y"] == pytest.approx(float(np.median(arrays["y"][members])))
        assert t["theme"] == 0
    assert [(t["label"], t["label_source"]) for t in body["topics"]] == [("A label", "llm"), ("Second", "keywords")]
    [theme] = body["themes"]
    sizes = np.array([t["size"] for t in body["topics"]])
    assert theme["label"] == "Everything" and theme["topics"] == [0, 1] and theme["size"] == int(sizes.sum())
    assert theme["x"] == pytest.approx(np.average([t["x"] for t in body["topics"]], weights=sizes))
    assert theme["y"] == pytest.approx(np.average([t["y"] for t in body["topics"]], weights=sizes))


def test_map_shows_a_renamed_topic_by_its_new_label(client, sessions):
    job_id = make_finished_job(sessions)
    with transaction(sessions) as session:
        session.execute(update(Topic).where(Topic.job_id == job_id, Topic.topic == 1).values(custom_label="Renamed"))
    response = client.get(f"/api/v1/jobs/{job_id}/map")
    assert "no-store" in response.headers["Cache-Control"]  # a page load never shows a label from before
    topics = response.get_json()["topics"]
    assert [(t["label"], t["label_source"]) for t in topics] == [("A label", "llm"), ("Renamed", "custom")]
    # document 2 is in topic 1 (make_finished_job: topic i % 3 - 1)
    assert client.get(f"/api/v1/jobs/{job_id}/documents/2").get_json()["label"] == "Renamed"


def test_points_are_x_then_y_float32_then_topic_int32_little_endian(client, sessions):
    job_id = make_finished_job(sessions, n_docs=40)
    arrays = stored(sessions, job_id)
    response = client.get(f"/api/v1/jobs/{job_id}/map/points")
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    data = response.get_data()
    assert len(data) == 12 * 40
    np.testing.assert_array_equal(np.frombuffer(data, "<f4", 40, 0), arrays["x"])
    np.testing.assert_array_equal(np.frombuffer(data, "<f4", 40, 160), arrays["y"])
    np.testing.assert_array_equal(np.frombuffer(data, "<i4", 40, 320), arrays["topic"])


def test_points_are_revalidated_by_etag_which_changes_when_a_document_moves(client, sessions):
    job_id = make_finished_job(sessions)
    first = client.get(f"/api/v1/jobs/{job_id}/map/points")
    etag = first.headers["ETag"]
    assert job_id in etag and "no-cache" in first.headers["Cache-Control"]
    again = client.get(f"/api/v1/jobs/{job_id}/map/points", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b"" and again.headers["ETag"] == etag

    topic = stored(sessions, job_id)["topic"].copy()
    topic[0] = 1  # document 0, an outlier, joins topic 1
    with transaction(sessions) as session:
        session.execute(update(JobArray).where(JobArray.job_id == job_id, JobArray.name == "topic")
                        .values(data=topic.astype("<i4").tobytes()))
    moved = client.get(f"/api/v1/jobs/{job_id}/map/points", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"] != etag
    assert np.frombuffer(moved.get_data(), "<i4", 30, 8 * 30)[0] == 1


def test_a_document_comes_with_its_title_text_and_topic_label(client, sessions):
    job_id = make_finished_job(sessions)
    assert client.get(f"/api/v1/jobs/{job_id}/documents/4").get_json() == {
        "index": 4, "title": None, "text": "doc 4 text", "topic": 0, "label": "A label"}
    outlier = client.get(f"/api/v1/jobs/{job_id}/documents/0").get_json()
    assert outlier["topic"] == -1 and outlier["label"] is None
    assert_error(client.get(f"/api/v1/jobs/{job_id}/documents/30"), 404, "not_found")
    assert_error(client.get(f"/api/v1/jobs/{job_id}/documents/-1"), 404, "not_found")


@pytest.mark.parametrize("path", ["map", "map/points", "documents/0"])
def test_map_endpoints_answer_404_for_an_unknown_job_and_409_until_it_succeeded(client, sessions, path):
    assert_error(client.get(f"/api/v1/jobs/no-such-job/{path}"), 404, "not_found")
    queued = make_job(sessions)
    assert_error(client.get(f"/api/v1/jobs/{queued}/{path}"), 409, "not_ready")


def test_plotly_is_served_by_the_app_as_javascript_with_a_long_cache_lifetime(client):
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200
    assert response.mimetype in ("text/javascript", "application/javascript")
    assert response.cache_control.max_age >= 30 * 24 * 3600
    # plotly.js 4.1.1's strict bundle, byte for byte as npm's plotly.js-strict-dist-min ships it (vendor/README.md)
    assert hashlib.sha256(response.get_data()).hexdigest() == PLOTLY_STRICT_SHA256
    response.close()


def test_the_map_partial_loads_its_scripts_from_the_app_and_has_no_inline_script(app, sessions):
    job_id = make_finished_job(sessions)
    with app.test_request_context(f"/jobs/{job_id}"), sessions() as session:
        html = render_template("_map.html", job=jobs.get_job(session, job_id))
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.DOTALL)
    assert [re.search(r'src="([^"?]+)', attrs).group(1) for attrs, _ in scripts] == [
        "/vendor/plotly.min.js", "/static/map.js"]
    assert all(body.strip() == "" for _, body in scripts)
    assert "http://" not in html and "https://" not in html
    assert f'data-meta-url="/api/v1/jobs/{job_id}/map"' in html
