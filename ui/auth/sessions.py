"""Creating and ending browser sessions; the cookie carries a random token, the database only its hash."""

from __future__ import annotations

import falcon

from simpletuner.ui.auth.credentials import new_token, token_hash
from simpletuner.ui.db.models import Session, User
from simpletuner.ui.settings import ServerSettings

SESSION_COOKIE = "st_session"
LOGIN_STATE_COOKIE = "st_login"


def start_session(user: User, *, remember: bool, now: float, settings: ServerSettings, ip: str | None,
                  user_agent: str | None) -> tuple[str, Session]:
    """A new session row for ``user``; returns the cookie token and the row."""
    token = new_token()
    lifetime = settings.remember_days * 86400 if remember else settings.session_hours * 3600
    row = Session.create(token_hash=token_hash(token), user=user, csrf_token=new_token(), created_at=now,
                         expires_at=now + lifetime, last_seen_at=now, remember=remember, ip=ip,
                         user_agent=(user_agent or "")[:200] or None)
    Session.delete().where(Session.expires_at <= now).execute()  # housekeeping, cheap with the index
    return token, row


def set_session_cookie(resp: falcon.Response, token: str, *, remember: bool, settings: ServerSettings) -> None:
    """HttpOnly, SameSite=Lax, Secure under TLS; persistent only for "remember me"."""
    max_age = int(settings.remember_days * 86400) if remember else None
    resp.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", secure=settings.secure_cookies,
                    http_only=True, same_site="Lax")


def clear_cookie(resp: falcon.Response, name: str, settings: ServerSettings) -> None:
    """Remove a cookie set by the app."""
    resp.unset_cookie(name, path="/", same_site="Lax")
    resp.set_cookie(name, "", max_age=0, path="/", secure=settings.secure_cookies, http_only=True, same_site="Lax")


def end_session(session_hash: str) -> None:
    """Delete a session row."""
    Session.delete().where(Session.token_hash == session_hash).execute()


def end_user_sessions(user_id: int, keep: str | None = None) -> None:
    """Delete every session of a user (after a password change or deactivation), except ``keep``."""
    query = Session.delete().where(Session.user == user_id)
    if keep:
        query = query.where(Session.token_hash != keep)
    query.execute()
