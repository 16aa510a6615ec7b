"""User accounts and their levels, with the rule that the last active admin can never be removed or demoted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import peewee

from simpletuner.core.errors import SimpleTunerError
from simpletuner.ui.auth.credentials import hash_password
from simpletuner.ui.auth.permissions import ADMIN_LEVEL, level_permissions
from simpletuner.ui.db.models import Level, User, UserLevel


class AccountError(SimpleTunerError):
    """A user or level change that is not allowed; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def find_user(username: str) -> User | None:
    """A user by name (case-insensitive)."""
    return User.get_or_none(User.username_key == username.lower())


def levels_by_name(names: Iterable[str]) -> list[Level]:
    """The levels named, in rank order; AccountError naming any unknown one."""
    wanted = list(dict.fromkeys(names))
    found = {lvl.name: lvl for lvl in Level.select().where(Level.name.in_(wanted))}
    missing = [n for n in wanted if n not in found]
    if missing:
        known = ", ".join(lvl.name for lvl in Level.select().order_by(Level.rank, Level.name))
        raise AccountError(f"unknown level(s) {', '.join(missing)}; known levels: {known}", status=400)
    return sorted(found.values(), key=lambda lvl: (lvl.rank, lvl.name))


def user_level_names(user_id: int) -> list[str]:
    """Names of the levels a user holds, in rank order."""
    query = (Level.select(Level.name).join(UserLevel).where(UserLevel.user == user_id)
             .order_by(Level.rank, Level.name))
    return [lvl.name for lvl in query]


def user_permissions(user_id: int) -> frozenset[str]:
    """Everything a user's levels grant."""
    query = Level.select().join(UserLevel).where(UserLevel.user == user_id)
    granted: set[str] = set()
    for lvl in query:
        granted |= level_permissions(lvl.name, lvl.builtin, lvl.permissions)
    return frozenset(granted)


def active_admin_ids() -> set[int]:
    """Ids of active users holding the admin level."""
    query = (User.select(User.id).join(UserLevel, on=(UserLevel.user == User.id))
             .join(Level, on=(UserLevel.level == Level.id))
             .where((Level.name == ADMIN_LEVEL) & (User.active == True)))  # noqa: E712 (peewee expression)
    return {u.id for u in query}


def ensure_not_last_admin(user_id: int, action: str) -> None:
    """AccountError when ``user_id`` is the only active admin."""
    if active_admin_ids() == {user_id}:
        raise AccountError(f"cannot {action} the last admin; make another user admin first")


def create_user(*, username: str, email: str | None, password: str | None, levels: Iterable[str],
                now: float, rounds: int = 12, display_name: str | None = None, auth_source: str = "local",
                external_id: str | None = None) -> User:
    """Create a user with levels; AccountError when the name is taken. Call inside a transaction."""
    chosen = levels_by_name(levels)
    if find_user(username) is not None:
        raise AccountError(f"a user named {username!r} already exists")
    try:
        user = User.create(username=username, username_key=username.lower(), email=email, display_name=display_name,
                           password_hash=hash_password(password, rounds) if password else None,
                           auth_source=auth_source, external_id=external_id, active=True, created_at=now,
                           updated_at=now)
    except peewee.IntegrityError:  # a concurrent request created the same name first
        raise AccountError(f"a user named {username!r} already exists") from None
    for lvl in chosen:
        UserLevel.create(user=user, level=lvl)
    return user


def set_user_levels(user: User, names: Iterable[str]) -> list[str]:
    """Replace a user's levels; refuses to demote the last admin. Returns the new level names."""
    chosen = levels_by_name(names)
    if ADMIN_LEVEL not in {lvl.name for lvl in chosen}:
        ensure_not_last_admin(user.id, "demote")
    UserLevel.delete().where(UserLevel.user == user.id).execute()
    for lvl in chosen:
        UserLevel.create(user=user, level=lvl)
    return [lvl.name for lvl in chosen]


def user_to_json(user: User, levels: list[str] | None = None) -> dict[str, Any]:
    """A user as JSON (never the password hash)."""
    return {
        "id": user.id, "username": user.username, "email": user.email, "display_name": user.display_name,
        "active": user.active, "auth_source": user.auth_source, "has_password": bool(user.password_hash),
        "levels": levels if levels is not None else user_level_names(user.id),
        "created_at": user.created_at, "last_login_at": user.last_login_at,
    }
