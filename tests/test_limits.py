"""Rate limits on submissions and on the requests that queue worker time (re-labels, merges, assign), per client
address and per user, counted in the real Redis: 429 with Retry-After in the one JSON error shape, nothing
stored for a refused request, and still limits (in memory) while Redis is down."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from cli.redis_server import free_port
from shared import users
from shared.db import transaction
from shared.models import Job
from tests.factories import make_finished_job

DOCS = [f"document {i} about bicycles and their repair" for i in range(25)]


def limited(settings, make_app, **limits):
    return make_app(settings.model_copy(update=limits)).test_client()


def submit(client, address: str, **headers):
    return client.post("/api/v1/jobs", json={"documents": DOCS}, environ_base={"REMOTE_ADDR": address},
                       headers=headers)


def n_jobs(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job))


def test_submissions_beyond_the_limit_get_429_with_retry_after_and_store_nothing(settings, make_app, sessions):
    client = limited(settings, make_app, rate_limit_submit="3/minute")
    assert [submit(client, "10.0.0.1").status_code for _ in range(3)] == [202, 202, 202]
    refused = submit(client, "10.0.0.1")
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert "too many submissions from this address" in error["message"] and "3 per 1 minute" in error["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert n_jobs(sessions) == 3
    # Another address has its own count.
    assert submit(client, "10.0.0.2").status_code == 202


def test_a_user_is_limited_across_addresses(settings, make_app, sessions):
    with transaction(sessions) as session:
        token = users.add_user(session, "alice")[1]
    client = limited(settings, make_app, auth="token", rate_limit_submit="2/minute")
    auth = {"Authorization": f"Bearer {token}"}
    assert submit(client, "10.0.1.1", **auth).status_code == 202
    assert submit(client, "10.0.1.2", **auth).status_code == 202
    refused = submit(client, "10.0.1.3", **auth)
    assert refused.status_code == 429 and "by this user" in refused.get_json()["error"]["message"]


def test_the_submit_form_is_limited_too_and_says_so_on_a_page(settings, make_app, sessions):
    client = limited(settings, make_app, rate_limit_submit="1/minute")
    page = client.get("/").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = {"text": "\n".join(DOCS), "csrf_token": token}
    assert client.post("/jobs", data=form).status_code == 303
    refused = client.post("/jobs", data=form)
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    assert "too many submissions" in refused.get_data(as_text=True)
    assert n_jobs(sessions) == 1


def test_re_labels_merges_and_assign_requests_share_a_limit(settings, make_app, sessions):
    job_id = make_finished_job(sessions)
    client = limited(settings, make_app, rate_limit_work="2/minute", assign_wait_seconds=0)
    assert client.post(f"/api/v1/jobs/{job_id}/assign", json={"documents": ["a new text"]}).status_code == 202
    assert client.post(f"/api/v1/jobs/{job_id}/labels").status_code == 202
    refused = client.post(f"/api/v1/jobs/{job_id}/merges", json={"topics": [0, 1]})
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "rate_limited"
    assert "re-labels, merges and assign requests" in refused.get_json()["error"]["message"]
    # Submissions have their own budget.
    assert submit(client, "127.0.0.1").status_code == 202


def test_while_redis_is_down_submissions_are_accepted_and_still_limited(settings, make_app, sessions):
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    client = limited(dead, make_app, rate_limit_submit="2/minute")
    started = time.monotonic()
    assert [submit(client, "10.0.2.1").status_code for _ in range(2)] == [202, 202]
    assert submit(client, "10.0.2.1").status_code == 429  # counted in this process's memory meanwhile
    assert time.monotonic() - started < 10  # short Redis timeouts: a dead Redis doesn't hang submissions
    assert n_jobs(sessions) == 2


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/healthz"])
def test_reading_is_not_limited(settings, make_app, path):
    client = limited(settings, make_app, rate_limit_submit="1/minute", rate_limit_work="1/minute")
    assert [client.get(path).status_code == 429 for _ in range(5)] == [False] * 5
