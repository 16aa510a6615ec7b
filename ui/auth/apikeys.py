"""API keys: ``st_`` + 43 random characters, shown once, stored as SHA-256, optionally scoped and expiring."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from simpletuner.ui.auth.credentials import new_api_key, token_hash
from simpletuner.ui.auth.permissions import PERMISSIONS
from simpletuner.ui.auth.users import AccountError, user_permissions
from simpletuner.ui.db.models import ApiKey, User

MAX_EXPIRY_DAYS = 3650


def create_api_key(*, user: User, name: str, now: float, expires_days: float | None = None,
                   scopes: Iterable[str] | None = None, created_by: str | None = None) -> tuple[str, ApiKey]:
    """Create a key for ``user``; returns the key (to show once) and its row.

    ``scopes`` must be a subset of the owner's current permissions; at request time the key is further limited to
    what the owner holds then, so demoting the owner shrinks their keys too.
    """
    scope_list = None
    if scopes is not None:
        scope_list = sorted(set(scopes))
        unknown = [s for s in scope_list if s not in PERMISSIONS]
        if unknown:
            raise AccountError(f"unknown permission(s) in scopes: {', '.join(unknown)}", status=400)
        beyond = sorted(set(scope_list) - user_permissions(user.id))
        if beyond:
            raise AccountError(f"scopes exceed what {user.username} may do: {', '.join(beyond)}", status=400)
    if expires_days is not None and not 0 < expires_days <= MAX_EXPIRY_DAYS:
        raise AccountError(f"expiry must be between 1 and {MAX_EXPIRY_DAYS} days", status=400)
    key = new_api_key()
    row = ApiKey.create(user=user, name=name, key_hash=token_hash(key), prefix=key[:10], scopes=scope_list,
                        created_at=now, created_by=created_by,
                        expires_at=now + expires_days * 86400 if expires_days is not None else None)
    return key, row


def api_key_to_json(row: ApiKey, now: float, owner: str | None = None) -> dict[str, Any]:
    """A key as JSON: never the key or its hash."""
    if row.revoked_at is not None:
        state = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        state = "expired"
    else:
        state = "active"
    data = {"id": row.id, "name": row.name, "prefix": row.prefix, "scopes": row.scopes, "created_at": row.created_at,
            "expires_at": row.expires_at, "last_used_at": row.last_used_at, "revoked_at": row.revoked_at,
            "state": state, "user_id": row.user_id}
    if owner is not None:
        data["owner"] = owner
    return data
