"""Who is asking: Flask-Login sessions for the pages, API tokens for the JSON API and the CLI.

With ``TOPICQ_AUTH=token`` every request but the login page, static files, /healthz and the OpenAPI document
needs a user: a page session (opened by signing in with an API token) or ``Authorization: Bearer TOKEN``. A job
belongs to the user who submitted it; anyone else (but an admin) is told it does not exist, so ids don't leak.
With ``none`` there are no accounts and every job is everyone's."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from shared import users
from shared.models import Job, User
from web import context
from web.errors import ApiError

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
# Reachable without a user: signing in, the app's own static files, the health check and the API's description.
PUBLIC_ENDPOINTS = {"auth.login", "auth.login_form", "static", "maps.vendor_plotly", "health.healthz",
                    "openapi.openapi_document"}


@dataclass(frozen=True)
class Account(UserMixin):
    """The signed-in user, detached from any database session."""

    id: int
    name: str
    is_admin: bool
    token_hash: str

    @classmethod
    def of(cls, user: User) -> Account:
        return cls(user.id, user.name, user.is_admin, user.token_hash)

    def get_id(self) -> str:
        # The token's hash is part of the session's id: a new token (`topicq users token`) ends old sessions.
        return f"{self.id}:{self.token_hash[:16]}"


def init_app(app: Flask) -> None:
    settings = app.extensions["topicq"]["settings"]
    app.secret_key = settings.secret_key or stored_secret_key(settings.data_dir)
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    app.register_blueprint(bp)
    app.before_request(require_user)
    app.context_processor(lambda: {"account": account(), "accounts_on": accounts_on()})


def stored_secret_key(data_dir: Path) -> str:
    """A secret kept in the data directory, made by whichever process (of several web workers) comes first."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked into place: a racing process never reads half a key,
        # and the first link wins.
        draft = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


@login_manager.user_loader
def _load_session_user(session_id: str) -> Account | None:
    user_id, _, hash_prefix = session_id.partition(":")
    user = context.db().get(User, int(user_id)) if user_id.isdigit() else None
    if user is None or not hash_prefix or not user.token_hash.startswith(hash_prefix):
        return None
    return Account.of(user)


@login_manager.request_loader
def _load_token_user(req) -> Account | None:
    token = bearer_token(req)
    user = users.by_token(context.db(), token) if token else None
    return Account.of(user) if user is not None else None


def bearer_token(req) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, if the request has one."""
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def accounts_on() -> bool:
    return context.settings().auth_mode == "token"


def account() -> Account | None:
    """The user making this request, or None (no accounts, or nobody signed in)."""
    if not accounts_on() or not current_user.is_authenticated:
        return None
    return current_user._get_current_object()


def require_user():
    if not accounts_on() or request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    if request.path.startswith("/api/"):
        challenge = {"WWW-Authenticate": 'Bearer realm="topicq"'}
        if request.headers.get("Authorization"):
            raise ApiError(401, "unauthorized", "the API token was not recognised", challenge)
        raise ApiError(401, "unauthorized", "this service needs an API token: send 'Authorization: Bearer TOKEN' "
                                            "(`topicq users add NAME` makes one)", challenge)
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


NOBODY = 0  # no user has id 0: with accounts on, a request without one sees no job


def visible_owner() -> int | None:
    """The owner whose jobs this request may see; None: every job (no accounts, or an admin)."""
    if not accounts_on():
        return None
    user = account()
    if user is None:
        return NOBODY
    return None if user.is_admin else user.id


def new_job_owner() -> int | None:
    user = account()
    return user.id if user is not None else None


def may_see(job: Job) -> bool:
    owner = visible_owner()
    return owner is None or job.owner_id == owner


@bp.get("/login")
def login():
    if not accounts_on():
        return redirect(url_for("pages.index"))
    return render_template("login.html", error=None, next=safe_next(request.args.get("next")))


@bp.post("/login")
def login_form():
    if not accounts_on():
        return redirect(url_for("pages.index"))
    user = users.by_token(context.db(), request.form.get("token", "").strip())
    target = safe_next(request.form.get("next"))
    if user is None:
        return render_template("login.html", error="That token was not recognised.", next=target), 401
    login_user(Account.of(user))
    return redirect(target or url_for("pages.index"), code=303)


@bp.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("auth.login") if accounts_on() else url_for("pages.index"), code=303)


def safe_next(target: str | None) -> str | None:
    """A same-site path to return to after signing in (never another site: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target
