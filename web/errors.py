"""One JSON error shape for the API: ``{"error": {"code": str, "message": str}}`` with a 4xx/5xx status."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from shared.corpus import CorpusError
from shared.schemas import ErrorBody, ErrorPublic
from web.context import close_db

log = logging.getLogger(__name__)


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
        return page_or_json(exc.code or 500, code, message)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return page_or_json(500, "internal_error", "an unexpected error occurred; the server log has the details")


def page_or_json(status: int, code: str, message: str):
    if _wants_json():
        return error_response(status, code, message)
    return render_template("error.html", status=status, message=message), status
