"""CSRF on the page forms, the JSON API's refusal of other sites' browsers, security headers on every response and
the session cookie's attributes, through the real app on a real database (SQLite and PostgreSQL where what is
stored matters) and Redis."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import users
from shared.db import transaction
from shared.models import Job
from tests.factories import make_finished_job, make_job
from tests.forms import csrf_token
from web.security import CONTENT_SECURITY_POLICY

DOCS = [f"document {i} about gardening and tomatoes" for i in range(8)]
EVIL = "https://evil.example"
TEMPLATES = Path(__file__).resolve().parents[1] / "web" / "templates"
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part


def n_jobs(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job))


def status_of(client, job_id: str) -> str:
    return client.get(f"/api/v1/jobs/{job_id}").get_json()["status"]


def upload(**headers):
    """What a cross-site HTML form can send without a preflight: a multipart POST (cookies go with it)."""
    return {"data": {"file": (io.BytesIO("\n".join(DOCS).encode()), "docs.txt"), "generate_labels": "false"},
            "content_type": "multipart/form-data", "headers": headers}


def test_a_form_post_without_its_csrf_token_is_refused_and_changes_nothing(client, sessions):
    job_id = make_job(sessions)
    for form in ({}, {"csrf_token": "forged"}):
        refused = client.post(f"/jobs/{job_id}/cancel", data=form)
        assert refused.status_code == 400 and refused.mimetype == "text/html"
        assert "security token" in refused.get_data(as_text=True) and "reload the page" in refused.get_data(as_text=True)
        assert status_of(client, job_id) == "queued"
    assert client.post("/jobs", data={"text": "\n".join(DOCS)}).status_code == 400
    assert n_jobs(sessions) == 1

    token = csrf_token(client, f"/jobs/{job_id}")  # as the job page's Cancel button sends it
    response = client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token})
    assert response.status_code == 303 and status_of(client, job_id) == "cancelled"
    assert client.post("/jobs", data={"text": "\n".join(DOCS), "csrf_token": token}).status_code == 303
    assert n_jobs(sessions) == 2


def test_a_csrf_token_belongs_to_its_session(app, sessions):
    job_id = make_finished_job(sessions)
    token = csrf_token(app.test_client(), f"/jobs/{job_id}")
    stranger = app.test_client()  # another browser: its own session cookie
    assert stranger.post(f"/jobs/{job_id}/delete", data={"csrf_token": token}).status_code == 400
    assert stranger.get(f"/jobs/{job_id}").status_code == 200


@sqlite_only
def test_a_csrf_failure_asked_for_json_answers_the_json_error_shape(client, sessions):
    job_id = make_finished_job(sessions)
    for request in ({"json": {"label": "x"}}, {"data": {"label": "x"}, "headers": {"Accept": "application/json"}}):
        response = client.post(f"/jobs/{job_id}/topics/0/label", **request)
        assert response.status_code == 400 and response.mimetype == "application/json"
        body = response.get_json()
        assert set(body) == {"error"} and body["error"]["code"] == "csrf_failed"
    assert client.get(f"/api/v1/jobs/{job_id}/topics/0").get_json()["label"] == "A label"


def test_a_browser_post_from_another_site_to_the_api_is_refused_and_stores_nothing(client, sessions):
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "null"}, {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Authorization": "Basic eDp5"}):
        response = client.post("/api/v1/jobs", **upload(**headers))
        assert response.status_code == 403, headers
        body = response.get_json()
        assert set(body) == {"error"} and body["error"]["code"] == "cross_origin"
        assert "Authorization: Bearer" in body["error"]["message"]
    assert n_jobs(sessions) == 0
    job_id = make_job(sessions)
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers={"Origin": EVIL}).status_code == 403
    assert status_of(client, job_id) == "queued"
    assert client.get("/api/v1/jobs", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}).status_code == 200

    # curl and the CLI send no Origin; a page of this site says same-origin, or its own origin.
    for headers in ({}, {"Sec-Fetch-Site": "same-origin"}, {"Origin": "http://localhost"}, {"Sec-Fetch-Site": "none"}):
        assert client.post("/api/v1/jobs", **upload(**headers)).status_code == 202, headers
    assert n_jobs(sessions) == 5


def test_the_origin_check_holds_for_a_signed_in_browser_but_not_for_a_bearer_token(settings, make_app, sessions):
    app = make_app(settings.model_copy(update={"auth": "token"}))
    with transaction(sessions) as session:
        token = users.add_user(session, "alice")[1]
    browser = app.test_client()
    signed_in = browser.post("/login", data={"token": token, "csrf_token": csrf_token(browser, "/login")})
    assert signed_in.status_code == 303
    assert browser.post("/api/v1/jobs", **upload(**{"Sec-Fetch-Site": "cross-site"})).status_code == 403
    assert browser.post("/api/v1/jobs", **upload(Origin=EVIL)).status_code == 403
    assert n_jobs(sessions) == 0
    assert browser.post("/api/v1/jobs", **upload(**{"Sec-Fetch-Site": "same-origin"})).status_code == 202

    api = app.test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.post("/api/v1/jobs", **upload(Origin=EVIL, **bearer)).status_code == 202
    assert api.post("/api/v1/jobs", **upload(Origin=EVIL, Authorization="Bearer tq_wrong")).status_code == 401
    assert n_jobs(sessions) == 2


@sqlite_only
def test_every_response_carries_the_security_headers(app, client, sessions):
    @app.get("/raise")
    def fail():
        raise RuntimeError("a bug")

    job_id = make_finished_job(sessions)
    responses = {
        "a page": client.get(f"/jobs/{job_id}"),
        "the API": client.get(f"/api/v1/jobs/{job_id}"),
        "a static file": client.get("/static/style.css"),
        "plotly.js": client.get("/vendor/plotly.min.js"),
        "a missing page": client.get("/no-such-page"),
        "a missing API job": client.get("/api/v1/jobs/no-such-job"),
        "a wrong method": client.delete("/"),
        "a server error": client.get("/raise"),
        "a CSRF refusal": client.post(f"/jobs/{job_id}/delete"),
        "a cross-site refusal": client.post("/api/v1/jobs", json={"documents": DOCS}, headers={"Origin": EVIL}),
    }
    statuses = {what: r.status_code for what, r in responses.items()}
    assert statuses == {"a page": 200, "the API": 200, "a static file": 200, "plotly.js": 200, "a missing page": 404,
                        "a missing API job": 404, "a wrong method": 405, "a server error": 500, "a CSRF refusal": 400,
                        "a cross-site refusal": 403}
    for what, response in responses.items():
        headers = response.headers
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, what
        assert headers["X-Content-Type-Options"] == "nosniff", what
        assert headers["X-Frame-Options"] == "DENY", what
        assert headers["Referrer-Policy"] == "same-origin", what
        response.close()
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_no_template_has_inline_script_style_or_event_handlers_and_every_form_posts_its_token():
    for path in sorted(TEMPLATES.glob("*.html")):
        html = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.DOTALL)  # what the browser gets
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path.name
        assert "<style" not in html and not re.search(r"\sstyle=", html), path.name
        assert not re.search(r"\son[a-z]+=", html), path.name
        for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", html, flags=re.DOTALL):
            assert 'name="csrf_token" value="{{ csrf_token() }}"' in form, path.name


def session_cookie(response) -> str:
    (cookie,) = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    return cookie


@sqlite_only
def test_the_session_cookie_is_lax_httponly_and_secure_over_https(settings, make_app, client):
    cookie = session_cookie(client.get("/"))  # the page's CSRF token opens a session
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    over_https = make_app(settings).test_client()
    assert "Secure" in session_cookie(over_https.get("/", base_url="https://topics.example"))

    # Behind a reverse proxy that ends TLS: its X-Forwarded-Proto counts only when the setting says there is one.
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    direct = make_app(settings).test_client()
    assert "Secure" not in session_cookie(direct.get("/", headers=forwarded))
    proxied = make_app(settings.model_copy(update={"behind_proxy": True})).test_client()
    assert "Secure" in session_cookie(proxied.get("/", headers=forwarded))


@sqlite_only
def test_over_https_a_form_post_must_come_from_a_page_of_this_host(settings, make_app, sessions):
    job_id = make_job(sessions)
    client = make_app(settings).test_client()
    base = "https://topics.example"
    token = csrf_token(client, f"{base}/jobs/{job_id}")
    url, form = f"{base}/jobs/{job_id}/cancel", {"csrf_token": token}
    assert client.post(url, data=form, headers={"Referer": f"{EVIL}/page"}).status_code == 400
    assert client.post(url, data=form).status_code == 400  # no Referer (Referrer-Policy same-origin sends it)
    assert status_of(client, job_id) == "queued"
    assert client.post(url, data=form, headers={"Referer": f"{base}/jobs/{job_id}"}).status_code == 303
    assert status_of(client, job_id) == "cancelled"
