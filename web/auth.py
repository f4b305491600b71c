"""Who is asking: Flask-Login sessions for the pages, API tokens for the JSON API and the CLI."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    pass
