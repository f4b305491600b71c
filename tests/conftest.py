"""Fixtures: a private Redis for the session, a fresh database per test (SQLite, and PostgreSQL when
TOPICQ_TEST_POSTGRES_URL is set), and an app built on them."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cli.redis_server import start_redis
from shared.db import make_engine, make_session_factory, migrate
from shared.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POSTGRES_URL = os.environ.get("TOPICQ_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def embedder():
    """The real bundled embedding model on torch, loaded once per test session (torch's vectors do not depend
    on what they are batched with, which test_embed.py checks to the fourth decimal; the ONNX path has its
    own tests in test_embedders.py, and the end-to-end tests run what `auto` picks)."""
    from shared.settings import Settings
    from worker.models import load_embedder

    return load_embedder(Settings(device="cpu", embedding_backend="torch", _env_file=None))


def read_corpus(name: str, limit: int | None = None, every: int = 1) -> list[dict]:
    """Records of a corpus in ../shared/data; ``every`` takes every n-th line (a sample across labels)."""
    path = DATA / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"corpus {path} is missing: CI must run with ../shared/data beside the checkout")
        pytest.skip(f"corpus {path} is not there")
    records = []
    with path.open() as handle:
        for number, line in enumerate(handle):
            if number % every == 0:
                records.append(json.loads(line))
                if limit and len(records) >= limit:
                    break
    return records


# Three chapters of the Python library reference, with keywords a topic of each would have.
CHAPTERS = {
    "Internet Protocols and Support": ["http", "url", "server", "request", "ftp", "smtp", "client", "protocol"],
    "Numeric and Mathematical Modules": ["decimal", "float", "math", "fraction", "random", "precision"],
    "File and Directory Access": ["path", "directory", "file", "glob", "os", "stat", "filename"],
}


def chapter_conversations(truncate) -> list:
    """A label prompt per chapter of CHAPTERS: five of its paragraphs, each cut to 30 tokens by ``truncate``."""
    from shared.prompts import build_messages

    records = read_corpus("python_docs.jsonl")
    out = []
    for chapter, keywords in CHAPTERS.items():
        docs = [r["text"] for r in records if r["label"] == chapter and len(r["text"].split()) > 15][:5]
        out.append(build_messages([truncate(d, 30) for d in docs], keywords))
    return out


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A Redis of the suite's own on a free port: the tests never touch a Redis they did not start."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    client = redis_lib.Redis.from_url(redis_server.url)
    client.flushdb()
    return client


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new empty database: a SQLite file under ``tmp_path``, or a PostgreSQL database of its own
    on TOPICQ_TEST_POSTGRES_URL's server (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'topicq.db'}"
        return
    name = f"topicq_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("PostgreSQL variant: TOPICQ_TEST_POSTGRES_URL is not set (make test sets it when one answers)")
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def settings(database_url, redis_server, tmp_path) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_server.url,
        min_documents=5,
        _env_file=None,
    )
    migrate(settings)
    return settings


@pytest.fixture
def sessions(settings):
    engine = make_engine(settings)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def make_app(redis_client):
    """Builds apps on given settings and closes their database pools afterwards."""
    from web import create_app

    built = []

    def build(settings):
        app = create_app(settings)
        app.config["TESTING"] = True
        built.append(app)
        return app

    yield build
    for app in built:
        app.extensions["topicq"]["sessions"].kw["bind"].dispose()


@pytest.fixture
def app(settings, make_app):
    return make_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()
