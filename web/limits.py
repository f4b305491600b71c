"""Rate limits (Flask-Limiter on the service's Redis) on submissions and re-labels."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    pass
