"""Posting a page's form from a Flask test client the way a browser does: with the CSRF token a page carries."""

from __future__ import annotations

import re


def csrf_token(client, page: str = "/") -> str:
    """The CSRF token in ``page``'s forms (the same for every page of the client's session)."""
    html = client.get(page).get_data(as_text=True)
    return re.search(r'<input type="hidden" name="csrf_token" value="([^"]+)">', html).group(1)


def post_form(client, url: str, data: dict | None = None, page: str = "/"):
    """POST ``data`` to ``url`` as the form on ``page`` would, its CSRF token included."""
    return client.post(url, data={**(data or {}), "csrf_token": csrf_token(client, page)})
