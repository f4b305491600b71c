"""One JSON error shape for the API: ``{"error": {"code": str, "message": str}}`` with a 4xx/5xx status, and the
error page for the HTML pages. A database that does not answer is a 503 ``database_unavailable`` (nothing of the
request was stored: its transaction never committed), never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from markupsafe import escape
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from shared.corpus import CorpusError
from shared.schemas import ErrorBody, ErrorPublic
from web.context import close_db

log = logging.getLogger(__name__)
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)  # the server is away, refused us, or timed out
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str):
    return jsonify(ErrorPublic(error=ErrorBody(code=code, message=message)).model_dump()), status


def validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        body, status = page_or_json(exc.status, exc.code, exc.message)
        return body, status, exc.headers

    @app.errorhandler(CorpusError)
    def _corpus_error(exc: CorpusError):
        return page_or_json(400, "bad_corpus", str(exc))

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError):
        return page_or_json(400, "invalid_request", validation_message(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"the request is larger than {app.config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MiB"
        body, status = page_or_json(exc.code or 500, code, message)
        return body, status, own_headers(exc)

    def _database_down(exc: SQLAlchemyError):
        log.warning("the job database did not answer on %s %s: %s", request.method, request.path,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        stored = "" if request.method in READS else " nothing was stored,"
        message = f"the job database did not answer;{stored} try again"
        try:
            return page_or_json(503, "database_unavailable", message)
        except SQLAlchemyError:  # the page's header asks the database who is signed in: a page without it
            return f"<!doctype html><title>Error 503 · topicq</title><h1>Error 503</h1><p>{escape(message)}</p>", 503

    for kind in DATABASE_DOWN:
        app.register_error_handler(kind, _database_down)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return page_or_json(500, "internal_error", "an unexpected error occurred; the server log has the details")


def own_headers(exc: HTTPException) -> list[tuple[str, str]]:
    """The exception's own headers (Allow on a 405, Retry-After on a 429 or 503, WWW-Authenticate on a 401), less
    those of the HTML body it would have rendered."""
    body_headers = ("content-type", "content-length")
    return [(name, value) for name, value in exc.get_headers() if name.lower() not in body_headers]


def page_or_json(status: int, code: str, message: str):
    if _wants_json():
        return error_response(status, code, message)
    return render_template("error.html", status=status, message=message), status
