"""CSRF protection on forms, an origin check on the JSON API, and security headers on every response.

- Page forms carry Flask-WTF's token (``csrf_token()`` in each template form); every unsafe request outside the
  API must send it back.
- The JSON API takes no form token (curl and the CLI post to it). A browser's unsafe request to it from another
  site is refused instead (403 ``cross_origin``), unless it carries a bearer token: a page on another site can
  only add an Authorization header through a CORS preflight, which this app never grants.
- Every response (pages, API, static files, errors) gets a strict Content-Security-Policy (only the app's own
  scripts and styles; no inline code, no eval), nosniff, no framing and a same-origin referrer.
- The session cookie is SameSite=Lax and HttpOnly, and Secure when the request came over HTTPS (behind a proxy:
  its X-Forwarded-Proto, trusted only when TOPICQ_BEHIND_PROXY says so).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from web.auth import bearer_token
from web.errors import error_response

API_PREFIX = "/api/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",  # plotly's PNG download and its mode bar icons
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors 'none' for browsers that predate it
    "Referrer-Policy": "same-origin",
}

csrf = CSRFProtect()


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed session cookie, Secure exactly when this request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or super().get_cookie_secure(app)


def init_app(app: Flask) -> None:
    if app.extensions["topicq"]["settings"].behind_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,  # check_request decides: forms yes, the JSON API no
        WTF_CSRF_TIME_LIMIT=None,  # a token lasts as long as its session: a page left open still submits
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
    )
    app.session_interface = SessionCookies()
    csrf.init_app(app)
    app.before_request(check_request)
    app.after_request(add_headers)
    app.register_error_handler(CSRFError, csrf_failed)


def check_request():
    """Unsafe requests: the API refuses other sites' browsers, everything else needs the form's CSRF token."""
    if request.method in SAFE_METHODS or request.endpoint is None:  # no route: let routing answer 404/405
        return None
    if request.path.startswith(API_PREFIX):
        if cross_site() and bearer_token(request) is None:
            return error_response(403, "cross_origin", "the API refuses requests a browser sends from another "
                                  "site; call it from this site's pages or with 'Authorization: Bearer TOKEN'")
        return None
    csrf.protect()
    return None


def cross_site() -> bool:
    """Whether a browser says this request comes from a page of another origin. Sec-Fetch-Site when the browser
    sends it (every current one does); else the Origin header against the host asked (no Origin: not a browser's
    cross-origin request)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc.lower() != request.host.lower()  # "null" (a sandboxed page) differs too


def csrf_failed(exc: CSRFError):
    message = f"the form's security token did not check out ({exc.description}): reload the page and submit again"
    if request.is_json or request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json":
        return error_response(400, "csrf_failed", message)
    return render_template("error.html", status=400, message=message), 400


def add_headers(response):
    response.headers.update(SECURITY_HEADERS)
    return response
