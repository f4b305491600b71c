"""The OpenAPI 3.1 document of the JSON API, generated from the pydantic schemas, at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("openapi", __name__)
