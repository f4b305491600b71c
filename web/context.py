"""Per-request access to the app's settings, database session, queue and artifact store."""

from __future__ import annotations

from celery import Celery
from flask import current_app, g
from sqlalchemy.orm import Session

from shared.settings import Settings
from shared.storage import ArtifactStore, open_store


def settings() -> Settings:
    return current_app.extensions["topicq"]["settings"]


def celery() -> Celery:
    return current_app.extensions["topicq"]["celery"]


def store() -> ArtifactStore:
    """The artifact store the workers write to (TOPICQ_ARTIFACT_URL, or the data directory's folder), made once
    per app: an object store's client keeps its connections between requests."""
    topicq = current_app.extensions["topicq"]
    if "store" not in topicq:  # two first requests at once may both make one: harmless, the last one stays
        topicq["store"] = open_store(topicq["settings"])
    return topicq["store"]


def db() -> Session:
    """The request's session; closed (and rolled back if uncommitted) at teardown."""
    if "db" not in g:
        g.db = current_app.extensions["topicq"]["sessions"]()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
