"""The topicq web front end: an app factory with one blueprint per area (pages and the JSON API; a topic and
its edits; search; exports; the map; assigning new documents)."""

from __future__ import annotations

import logging

from flask import Flask

from shared.db import make_engine, make_session_factory
from shared.queue import make_celery
from shared.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    # Pasted corpora arrive as a form field, held whole in memory: as large as a JSON body may be (Flask's
    # default is 500 kB), not as large as a file upload, which is streamed.
    app.config["MAX_FORM_MEMORY_SIZE"] = min(settings.max_json_mb, settings.max_upload_mb) * 1024 * 1024
    app.extensions["topicq"] = {
        "settings": settings,
        "sessions": make_session_factory(make_engine(settings)),
        "celery": make_celery(settings, name="topicq-web"),
    }

    from web import (
        api, assign, auth, errors, exports, health, limits, maps, merge, metrics, openapi, pages, search, security,
        topics,
    )

    for blueprint in (
        api.bp, health.bp, pages.bp, topics.bp, search.bp, exports.bp, maps.bp, assign.bp, merge.bp, openapi.bp,
    ):
        app.register_blueprint(blueprint)
    errors.init_app(app)
    metrics.init_app(app)  # /metrics for Prometheus; its admin check answers a scraper before auth would redirect
    auth.init_app(app)  # who is asking: a session login for pages, an API token for the JSON API and the CLI
    security.init_app(app)  # CSRF on forms, the origin check on the JSON API, security headers on every response
    limits.init_app(app)  # rate limits on submissions and re-labels
    return app
