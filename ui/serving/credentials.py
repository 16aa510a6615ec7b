"""Which of the credentials that opened event streams still hold: the check that ends a stream on logout,
session expiry, API-key revocation or expiry, or when its user is deactivated. Two queries, however many streams."""

from __future__ import annotations

from collections.abc import Collection

from simpletuner.ui.db.models import ApiKey, Session, User


def valid_sessions(hashes: Collection[str], now: float) -> set[str]:
    """The session hashes among ``hashes`` whose session is unexpired and whose user is active."""
    if not hashes:
        return set()
    query = (Session.select(Session.token_hash).join(User, on=(Session.user == User.id))
             .where(Session.token_hash.in_(list(hashes)) & (Session.expires_at > now) & (User.active == True)))  # noqa: E712
    return {row.token_hash for row in query}


def valid_keys(key_ids: Collection[int], now: float) -> set[int]:
    """The API key ids among ``key_ids`` that are neither revoked nor expired and whose user is active."""
    if not key_ids:
        return set()
    query = (ApiKey.select(ApiKey.id).join(User, on=(ApiKey.user == User.id))
             .where(ApiKey.id.in_(list(key_ids)) & ApiKey.revoked_at.is_null()
                    & (ApiKey.expires_at.is_null() | (ApiKey.expires_at > now)) & (User.active == True)))  # noqa: E712
    return {row.id for row in query}
