"""Login throttling per account and per address, stored in the database so every worker sees the same counts."""

from __future__ import annotations

import math

import peewee

from simpletuner.ui.db.models import LoginFailure
from simpletuner.ui.settings import ServerSettings


def _keys(username: str, ip: str | None) -> list[tuple[str, str]]:
    keys = [("account", f"user:{username.lower()[:250]}")]
    if ip:
        keys.append(("address", f"addr:{ip}"))
    return keys


def retry_after(username: str, ip: str | None, now: float, settings: ServerSettings) -> int | None:
    """Seconds to wait when the account or the address has used up its failures, else None."""
    limits = {"account": settings.account_failures, "address": settings.address_failures}
    wait = 0.0
    rows = {r.key: r for r in LoginFailure.select().where(LoginFailure.key.in_([k for _, k in _keys(username, ip)]))}
    for kind, key in _keys(username, ip):
        row = rows.get(key)
        if row is None or row.window_start + settings.failure_window_s <= now:
            continue
        if row.count >= limits[kind]:
            wait = max(wait, row.window_start + settings.failure_window_s - now)
    return max(1, math.ceil(wait)) if wait > 0 else None


def record_failure(username: str, ip: str | None, database: peewee.Database, now: float,
                   settings: ServerSettings) -> None:
    """Count a failed login against the account and the address."""
    with database.atomic():
        for _, key in _keys(username, ip):
            row = LoginFailure.get_or_none(LoginFailure.key == key)
            if row is None:
                LoginFailure.insert(key=key, count=1, window_start=now).on_conflict(
                    conflict_target=[LoginFailure.key],
                    update={LoginFailure.count: LoginFailure.count + 1},
                ).execute()
            elif row.window_start + settings.failure_window_s <= now:
                LoginFailure.update(count=1, window_start=now).where(LoginFailure.key == key).execute()
            else:
                LoginFailure.update(count=LoginFailure.count + 1).where(LoginFailure.key == key).execute()


def clear_account(username: str) -> None:
    """Forget an account's failures after a successful login (the address keeps its count)."""
    LoginFailure.delete().where(LoginFailure.key == f"user:{username.lower()[:250]}").execute()
