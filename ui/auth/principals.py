"""Finding who a request comes from: one indexed query per session cookie or API key.

The user, their levels and the key or session come back from a single join. Bookkeeping (a key's last-used time,
a session's sliding expiry) is written only when the stored time is older than ``touch_interval_s``, with a
conditional UPDATE so that several workers do not all write it: steady traffic costs no database writes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import peewee

from simpletuner.ui.auth.credentials import looks_like_api_key, token_hash
from simpletuner.ui.auth.permissions import Principal, principal_from_rows
from simpletuner.ui.db import prepared
from simpletuner.ui.db.models import ApiKey, Level, Session, User, UserLevel
from simpletuner.ui.settings import ServerSettings


def _with_levels(query: peewee.ModelSelect) -> peewee.ModelSelect:
    return (
        query.join(UserLevel, peewee.JOIN.LEFT_OUTER, on=(UserLevel.user == User.id))
        .join(Level, peewee.JOIN.LEFT_OUTER, on=(UserLevel.level == Level.id))
    )


_JSON_COLUMNS = ("scopes", "level_permissions")
_HASH = "\0"  # stands for the hash while a statement is built


def _rows(name: str, build: Callable[[str], peewee.ModelSelect], digest: str) -> list[dict[str, Any]]:
    """Rows of a lookup by hash; the statement is built once per dialect (see :mod:`simpletuner.ui.db.prepared`)."""
    database = User._meta.database
    sql, params = prepared.statement(database, f"auth.{name}", lambda: build(_HASH))
    if params != (_HASH,):  # the statement must take exactly the hash
        raise RuntimeError(f"unexpected parameters in the {name} lookup: {params}")
    rows = prepared.run(database, sql, (digest,))
    for row in rows:
        for column in _JSON_COLUMNS:
            if isinstance(row.get(column), str):
                row[column] = _permission_list(row[column])
    return rows


@functools.lru_cache(maxsize=1024)
def _permission_list(text: str) -> tuple[Any, ...] | Any:
    """A stored permission list (a level's, or a key's scopes), decoded once per worker: the same few texts come
    with every request. Lists come back as tuples, so a cached value cannot be changed by its users."""
    value = json.loads(text)
    return tuple(value) if isinstance(value, list) else value


_USER_COLUMNS = (
    User.id.alias("user_id"), User.username, User.active,
    Level.name.alias("level_name"), Level.builtin.alias("level_builtin"), Level.permissions.alias("level_permissions"),
)


def principal_for_api_key(key: str, now: float, settings: ServerSettings) -> Principal | None:
    """The principal an API key stands for, or None when it is unknown, revoked, expired or its owner inactive."""
    if not looks_like_api_key(key):
        return None
    def build(digest: str) -> peewee.ModelSelect:
        query = (ApiKey.select(ApiKey.id.alias("key_id"), ApiKey.scopes, ApiKey.expires_at, ApiKey.revoked_at,
                               ApiKey.last_used_at, *_USER_COLUMNS)
                 .join(User, on=(ApiKey.user == User.id)))
        return _with_levels(query).where(ApiKey.key_hash == digest)

    rows = _rows("api_key", build, token_hash(key))
    if not rows:
        return None
    first = rows[0]
    if first["revoked_at"] is not None or not first["active"]:
        return None
    if first["expires_at"] is not None and first["expires_at"] <= now:
        return None
    last_used = first["last_used_at"]
    if last_used is None or now - last_used >= settings.touch_interval_s:
        stale = now - settings.touch_interval_s
        (ApiKey.update(last_used_at=now)
         .where((ApiKey.id == first["key_id"]) & (ApiKey.last_used_at.is_null() | (ApiKey.last_used_at <= stale)))
         .execute())
    return principal_from_rows(rows, "api_key", scopes=first["scopes"], api_key_id=first["key_id"])


def principal_for_session(token: str, now: float, settings: ServerSettings) -> Principal | None:
    """The principal of a session cookie, or None when the session is unknown, expired or its user inactive."""
    if not token or len(token) > 128:
        return None
    digest = token_hash(token)
    def build(value: str) -> peewee.ModelSelect:
        query = (Session.select(Session.token_hash, Session.csrf_token, Session.expires_at, Session.last_seen_at,
                                Session.remember, *_USER_COLUMNS)
                 .join(User, on=(Session.user == User.id)))
        return _with_levels(query).where(Session.token_hash == value)

    rows = _rows("session", build, digest)
    if not rows:
        return None
    first = rows[0]
    if first["expires_at"] <= now or not first["active"]:
        return None
    if now - first["last_seen_at"] >= settings.touch_interval_s and not first["remember"]:
        (Session.update(last_seen_at=now, expires_at=now + settings.session_hours * 3600)
         .where((Session.token_hash == digest) & (Session.last_seen_at <= now - settings.touch_interval_s))
         .execute())
    return principal_from_rows(rows, "session", csrf_token=first["csrf_token"], session_hash=digest)
