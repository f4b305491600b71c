"""Rate limits on the requests that queue work: submissions, and re-labels, merges and assign requests. Each
kind is limited per user and, separately, per client address (Flask-Limiter, counted in the service's Redis,
so every web process shares the counts); beyond a limit: 429 with Retry-After in the one JSON error shape.

If Redis does not answer, each web process counts in memory instead: submissions keep being accepted (the
sweep queues them once Redis is back), still limited."""

from __future__ import annotations

import hashlib
import time

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address

from shared.settings import Settings
from web import auth
from web.errors import page_or_json

SUBMIT_ENDPOINTS = ("api.create_job", "pages.create_job")
WORK_ENDPOINTS = ("api.relabel", "pages.relabel", "merge.create_merge", "merge.merge_form",
                  "assign.assign_documents", "assign.assign_form")
WHAT = {"submit": "submissions", "work": "re-labels, merges and assign requests"}


def init_app(app: Flask) -> None:
    settings: Settings = app.extensions["topicq"]["settings"]
    limiter = Limiter(
        key_func=get_remote_address,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        # Short timeouts: a Redis that is down costs a request half a second, then the in-memory counts take over.
        storage_options={"socket_connect_timeout": 0.5, "socket_timeout": 0.5} if settings.redis_url else {},
        key_prefix=key_prefix(settings),
        strategy="moving-window",
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    for kind, limit, endpoints in (("submit", settings.rate_limit_submit, SUBMIT_ENDPOINTS),
                                   ("work", settings.rate_limit_work, WORK_ENDPOINTS)):
        per_user = limiter.shared_limit(limit, scope=f"{kind}-user", key_func=user_key,
                                        exempt_when=lambda: auth.account() is None,
                                        error_message=f"too many {WHAT[kind]} by this user")
        per_address = limiter.shared_limit(limit, scope=f"{kind}-address",
                                           error_message=f"too many {WHAT[kind]} from this address")
        for endpoint in endpoints:
            app.view_functions[endpoint] = per_address(per_user(app.view_functions[endpoint]))

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded):
        # Flask-Limiter adds Retry-After (and X-RateLimit-*) to this response after the handler.
        hit = limiter.current_limit
        wait = f"; try again in {max(1, int(hit.reset_at - time.time()))} s" if hit is not None else ""
        return page_or_json(429, "rate_limited", f"{exc.description} (at most {exc.limit.limit}){wait}")


def key_prefix(settings: Settings) -> str:
    """Counts of one service (one job database): two services sharing a Redis don't share their limits."""
    return "topicq-limits-" + hashlib.sha256(settings.sqlalchemy_url.encode()).hexdigest()[:12]


def user_key() -> str:
    user = auth.account()
    return f"user-{user.id}" if user is not None else get_remote_address()

