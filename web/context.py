"""Per-request access to the app's settings, database session and queue."""

from __future__ import annotations

from celery import Celery
from flask import current_app, g
from sqlalchemy.orm import Session

from shared.settings import Settings


def settings() -> Settings:
    return current_app.extensions["topicq"]["settings"]


def celery() -> Celery:
    return current_app.extensions["topicq"]["celery"]


def db() -> Session:
    """The request's session; closed (and rolled back if uncommitted) at teardown."""
    if "db" not in g:
        g.db = current_app.extensions["topicq"]["sessions"]()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
