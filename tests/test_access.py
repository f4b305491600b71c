"""Accounts (TOPICQ_AUTH=token): API tokens, page logins, and jobs that only their owner (and admins) can see.
Every route of a job is checked, so a new one that forgets the owner check fails here."""

from __future__ import annotations

import json
import re
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from werkzeug.serving import make_server

from cli.main import cli
from cli.redis_server import free_port
from shared import users
from shared.db import transaction
from shared.models import Job, User
from shared.queue import WORKER_KEY_PREFIX
from shared.settings import Settings, get_settings
from tests.factories import make_finished_job

DOCS = [f"document {i} about gardening and tomatoes" for i in range(25)]


@pytest.fixture
def token_settings(settings):
    return settings.model_copy(update={"auth": "token"})


@pytest.fixture
def token_app(token_settings, make_app):
    return make_app(token_settings)


@pytest.fixture
def tokens(sessions) -> dict[str, str]:
    made = {}
    with transaction(sessions) as session:
        for name, admin in (("alice", False), ("bob", False), ("root", True)):
            made[name] = users.add_user(session, name, admin=admin)[1]
    return made


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def owned_finished_job(sessions, owner: str) -> str:
    job_id = make_finished_job(sessions)
    with transaction(sessions) as session:
        owner_id = session.scalar(select(User.id).where(User.name == owner))
        session.execute(update(Job).where(Job.id == job_id).values(owner_id=owner_id))
    return job_id


def test_web_processes_starting_together_share_one_secret_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from web.auth import stored_secret_key

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: stored_secret_key(tmp_path / "data"), range(16)))
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["secret_key"]


def test_auth_is_on_unless_the_web_listens_on_loopback_only():
    assert Settings(host="127.0.0.1", _env_file=None).auth_mode == "none"
    assert Settings(host="::1", _env_file=None).auth_mode == "none"
    assert Settings(host="0.0.0.0", _env_file=None).auth_mode == "token"
    assert Settings(host="10.0.0.5", _env_file=None).auth_mode == "token"
    assert Settings(host="0.0.0.0", auth="none", _env_file=None).auth_mode == "none"


def test_without_a_token_the_api_answers_401_and_pages_ask_to_sign_in(token_app, tokens):
    client = token_app.test_client()
    response = client.get("/api/v1/jobs")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert "Bearer" in response.get_json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = client.get("/api/v1/jobs", headers=bearer("tq_not-a-real-token"))
    assert response.status_code == 401 and response.get_json()["error"]["message"] == "the API token was not recognised"
    assert client.post("/api/v1/jobs", json={"documents": DOCS}).status_code == 401
    page = client.get("/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    # What stays open: the login page, static files, the health check and the API's description.
    assert client.get("/login").status_code == 200
    with client.get("/static/style.css") as static:
        assert static.status_code == 200
    assert client.get("/healthz").status_code in (200, 503)


def test_a_job_belongs_to_its_submitter_and_is_404_for_anyone_else_but_an_admin(token_app, tokens, sessions):
    client = token_app.test_client()
    response = client.post("/api/v1/jobs", json={"documents": DOCS, "name": "alice's"}, headers=bearer(tokens["alice"]))
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    with sessions() as session:
        assert session.get(Job, job_id).owner_id == users.by_name(session, "alice").id

    assert client.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["alice"])).status_code == 200
    for_bob = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["bob"]))
    assert for_bob.status_code == 404 and for_bob.get_json()["error"]["code"] == "not_found"
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(tokens["bob"])).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["alice"])).get_json()["status"] == "queued"

    def listed(name):
        body = client.get("/api/v1/jobs", headers=bearer(tokens[name])).get_json()
        return [j["id"] for j in body["jobs"]], body["total"]

    assert listed("alice") == ([job_id], 1)
    assert listed("bob") == ([], 0)
    assert listed("root") == ([job_id], 1)
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(tokens["root"])).status_code == 200


def job_routes(app):
    """Every route of one job (API, pages, downloads, map data, assign), with its methods."""
    for rule in app.url_map.iter_rules():
        if "job_id" in rule.arguments:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule, method


def test_every_route_of_a_job_is_404_for_another_user(token_app, tokens, sessions):
    job_id = owned_finished_job(sessions, "alice")
    client = token_app.test_client()
    pages = {name: token_app.test_client() for name in tokens}  # signed-in browsers, with their CSRF tokens
    csrf = {name: csrf_of(sign_in(page, tokens[name], "/") and page.get("/")) for name, page in pages.items()}
    values = {"topic": 0, "index": 1, "idx": 1, "assignment_id": "00000000-0000-0000-0000-000000000000",
              "merge_id": "00000000-0000-0000-0000-000000000000", "fmt": "csv", "kind": "png"}

    def ask(name, url, method):
        if url.startswith("/api/"):
            return client.open(url, method=method, headers=bearer(tokens[name]), json={})
        form = {"csrf_token": csrf[name]} if method != "GET" else None
        return pages[name].open(url, method=method, data=form)

    checked = 0
    for rule, method in job_routes(token_app):
        args = {name: values.get(name, "x") for name in rule.arguments}
        args["job_id"] = job_id
        if "ext" in rule.arguments:  # documents.csv|jsonl|parquet, map.png|svg
            args["ext"] = min(rule._converters["ext"].items)
        url = rule.build(args, append_unknown=False)[1]
        for_bob = ask("bob", url, method)
        assert for_bob.status_code == 404, f"{method} {url} answered {for_bob.status_code} to another user"
        if url.startswith("/api/"):
            assert for_bob.get_json()["error"]["code"] == "not_found"
        checked += 1
        if method == "GET":  # the owner and an admin do reach it (whatever it then answers)
            for name in ("alice", "root"):
                answer = ask(name, url, method)
                assert answer.status_code != 404 or "no job with id" not in answer.get_data(as_text=True), url
    assert checked >= 25  # the job page, topics, documents, exports, map, search, assign, merges, labels, ...


def csrf_of(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def sign_in(client, token: str, next_path: str | None = None):
    form = {"token": token, "csrf_token": csrf_of(client.get("/login"))}
    if next_path:
        form["next"] = next_path
    return client.post("/login", data=form)


def test_the_pages_work_with_a_session_login_and_show_only_the_users_jobs(token_app, tokens, sessions):
    mine = owned_finished_job(sessions, "alice")
    theirs = owned_finished_job(sessions, "bob")
    client = token_app.test_client()
    assert sign_in(client, "tq_wrong").status_code == 401
    response = sign_in(client, tokens["alice"], next_path=f"/jobs/{mine}")
    assert response.status_code == 303 and response.headers["Location"] == f"/jobs/{mine}"
    index = client.get("/").get_data(as_text=True)
    assert mine in index and theirs not in index and "alice" in index
    assert client.get(f"/jobs/{mine}").status_code == 200
    assert client.get(f"/jobs/{theirs}").status_code == 404
    # The session also serves the page's own calls to the API (the map, progress).
    assert client.get(f"/api/v1/jobs/{mine}/map").status_code == 200
    assert client.get(f"/api/v1/jobs/{theirs}/map").status_code == 404


def test_signing_in_never_redirects_to_another_site(token_app, tokens):
    client = token_app.test_client()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = sign_in(client, tokens["alice"], next_path=target)
        assert response.status_code == 303 and response.headers["Location"] == "/", target


def test_a_new_token_ends_the_old_token_and_its_sessions(token_app, tokens, sessions):
    client = token_app.test_client()
    sign_in(client, tokens["alice"])
    assert client.get("/").status_code == 200
    with transaction(sessions) as session:
        fresh = users.rotate_token(session, "alice")
    assert client.get("/").status_code == 302  # the session opened with the old token is over
    api = token_app.test_client()
    assert api.get("/api/v1/jobs", headers=bearer(tokens["alice"])).status_code == 401
    assert api.get("/api/v1/jobs", headers=bearer(fresh)).status_code == 200


def test_a_user_may_have_only_so_many_jobs_queued(token_settings, make_app, tokens):
    app = make_app(token_settings.model_copy(update={"max_queued_jobs": 2}))
    client = app.test_client()
    for _ in range(2):
        assert client.post("/api/v1/jobs", json={"documents": DOCS}, headers=bearer(tokens["alice"])).status_code == 202
    refused = client.post("/api/v1/jobs", json={"documents": DOCS}, headers=bearer(tokens["alice"]))
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "too_many_queued_jobs"
    assert int(refused.headers["Retry-After"]) > 0
    # The cap is per user: bob is not held back by alice's jobs.
    assert client.post("/api/v1/jobs", json={"documents": DOCS}, headers=bearer(tokens["bob"])).status_code == 202


@pytest.fixture
def served(token_settings, make_app, tokens):
    """The app behind a real HTTP server in a thread, for the CLI."""
    port = free_port()
    server = make_server("127.0.0.1", port, make_app(token_settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join()


def run_cli(args: list[str], env: dict[str, str]):
    get_settings.cache_clear()  # the CLI reads its settings once per process; each call here has its own
    try:
        return CliRunner().invoke(cli, args, env=env)
    finally:
        get_settings.cache_clear()


def test_users_add_prints_a_token_once_and_stores_only_its_hash(token_settings, sessions, served, tmp_path):
    env = {"TOPICQ_DATABASE_URL": token_settings.sqlalchemy_url, "TOPICQ_DATA_DIR": str(token_settings.data_dir),
           "TOPICQ_SERVER_URL": served}
    result = run_cli(["users", "add", "carol"], env=env)
    assert result.exit_code == 0, result.output
    token = re.search(r"^(tq_\S+)$", result.output, re.M).group(1)
    with sessions() as session:
        row = session.scalars(select(User).where(User.name == "carol")).one()
        assert token not in repr([getattr(row, c.name) for c in User.__table__.columns])
        assert row.token_hash == users.token_hash(token) and not row.is_admin
    again = run_cli(["users", "add", "carol"], env=env)
    assert again.exit_code != 0 and "exists already" in again.output

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(DOCS))
    refused = run_cli(["submit", str(corpus)], env=env)
    assert refused.exit_code != 0 and "401" in refused.output and "TOPICQ_TOKEN" in refused.output
    submitted = run_cli(["submit", str(corpus)], env={**env, "TOPICQ_TOKEN": token})
    assert submitted.exit_code == 0, submitted.output
    job_id = re.search(r"job (\S+):", submitted.output).group(1)
    status = run_cli(["status", job_id], env={**env, "TOPICQ_TOKEN": token})
    assert status.exit_code == 0 and "queued" in status.output


def test_the_workers_list_names_only_the_users_own_jobs(token_app, tokens, sessions, redis_client):
    job_id = owned_finished_job(sessions, "alice")
    key = WORKER_KEY_PREFIX + "test-gpu@host"
    redis_client.set(key, json.dumps({"hostname": "test-gpu@host", "job": job_id, "stage": "embed",
                                      "seen_at": "2026-12-02T10:00:00+00:00"}), ex=60)
    try:
        client = token_app.test_client()

        def seen(name):
            workers = client.get("/api/v1/workers", headers=bearer(tokens[name])).get_json()["workers"]
            return {w["hostname"]: w["job"] for w in workers}.get("test-gpu@host", "absent")

        assert seen("alice") == job_id and seen("root") == job_id
        assert seen("bob") is None
    finally:
        redis_client.delete(key)


def test_the_open_health_check_names_no_job(token_app, sessions, redis_client):
    job_id = make_finished_job(sessions)
    key = WORKER_KEY_PREFIX + "test-cpu@host"
    redis_client.set(key, json.dumps({"hostname": "test-cpu@host", "job": job_id, "stage": "cluster",
                                      "seen_at": "2026-12-02T10:00:00+00:00"}), ex=60)
    try:
        workers = token_app.test_client().get("/healthz").get_json()["workers"]
        assert [w["job"] for w in workers if w["hostname"] == "test-cpu@host"] == [None]
    finally:
        redis_client.delete(key)
