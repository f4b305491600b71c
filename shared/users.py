"""Accounts for ``TOPICQ_AUTH=token``: a user has a name, an admin flag and one API token, of which only a
SHA-256 hash is stored (the token is random, 256 bits: a slow password hash adds nothing). The token is shown
once, when it is made."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import User

TOKEN_PREFIX = "tq_"  # recognisable in a leaked-secrets scan and in a log line someone pastes
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class UserError(ValueError):
    """A user cannot be created or changed as asked (a bad or taken name, an unknown user)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def add_user(session: Session, name: str, *, admin: bool = False) -> tuple[User, str]:
    """Create a user; returns it with its API token (the only time the token exists outside the caller)."""
    if not NAME_PATTERN.match(name):
        raise UserError(f"{name!r} is not a valid user name: 1 to 64 letters, digits and . _ @ -, "
                        "starting with a letter or digit")
    if by_name(session, name) is not None:
        raise UserError(f"a user named {name!r} exists already")
    token = new_token()
    user = User(name=name, is_admin=admin, token_hash=token_hash(token))
    session.add(user)
    session.flush()
    return user, token


def rotate_token(session: Session, name: str) -> str:
    """Give a user a new API token; the old one (and every page session opened with it) stops working."""
    user = by_name(session, name)
    if user is None:
        raise UserError(f"no user named {name!r}")
    token = new_token()
    user.token_hash = token_hash(token)
    session.flush()
    return token


def by_name(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def by_token(session: Session, token: str) -> User | None:
    """The user whose API token this is, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    return session.scalar(select(User).where(User.token_hash == token_hash(token)))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))
