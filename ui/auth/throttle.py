"""Login throttling by growing delays, stored in the database so every worker sees the same buckets.

A failed login counts in buckets: the account from that address (``pair:``) and the address itself (``addr:``; an
IPv6 client by its /64, which one machine usually holds whole), or — for a browser holding the account's known-device
cookie (:mod:`simpletuner.ui.auth.devices`) — that device alone (``device:``). After a bucket's free failures, each
further failure makes it refuse attempts for ``failure_delay_s``, doubling each time up to ``max_failure_delay_s``
(429 with Retry-After). Nothing locks an account: an attacker's failures fill the attacker's buckets, and the owner
logs in from a known device whatever happens elsewhere.

An attempt on a bucket already past its free failures claims the bucket's next wait before the password is checked,
so parallel attempts cannot all slip through while the first one is being checked.
"""

from __future__ import annotations

import ipaddress
import math

import attrs
import peewee

from simpletuner.ui.db.models import LoginThrottle
from simpletuner.ui.settings import ServerSettings

MAX_KEY = 300


@attrs.frozen
class Bucket:
    """One counter of failed logins and how many failures it allows before delays start."""

    key: str
    free: int
    cleared_by_success: bool


def buckets_for(account: str, ip: str | None, device: str | None, settings: ServerSettings) -> list[Bucket]:
    """The buckets a login attempt for ``account`` counts in: its known device's alone when ``device`` is the id of
    a valid known-device cookie for the account, else the account from this address and the address (not for
    loopback, see :class:`~simpletuner.ui.settings.ServerSettings`)."""
    name = account.lower()
    if device is not None:
        return [Bucket(f"device:{device}"[:MAX_KEY], settings.pair_free_failures, True)]
    where = address_key(ip)
    buckets = [Bucket(f"pair:{where}|{name}"[:MAX_KEY], settings.pair_free_failures, True)]
    if where != "loopback":
        buckets.append(Bucket(f"addr:{where}", settings.address_free_failures, False))
    return buckets


def address_buckets(ip: str | None, settings: ServerSettings) -> list[Bucket]:
    """The address bucket alone, for attempts that name no account (a failed single sign-on)."""
    return [b for b in buckets_for("", ip, None, settings) if not b.cleared_by_success]


def address_key(ip: str | None) -> str:
    """How throttling names a client address: IPv4 as is, IPv6 by its /64, loopback as one name."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip or "")
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def delay(failures: int, free: int, settings: ServerSettings) -> float:
    """Seconds a bucket waits after ``failures`` failures: none up to ``free``, then 1, 2, 4 ... times the first."""
    over = failures - free
    if over <= 0:
        return 0.0
    return min(settings.failure_delay_s * 2.0 ** min(over - 1, 60), settings.max_failure_delay_s)


def _rows(buckets: list[Bucket], now: float, settings: ServerSettings) -> dict[str, LoginThrottle]:
    """The buckets' rows that still count (a row quiet for the window after its last wait is forgotten)."""
    rows = LoginThrottle.select().where(LoginThrottle.key.in_([b.key for b in buckets]))
    return {row.key: row for row in rows if now < row.blocked_until + settings.failure_window_s}


def wait_for(buckets: list[Bucket], now: float, settings: ServerSettings) -> int | None:
    """Seconds before any attempt counting in ``buckets`` may be made, or None when one may be made now."""
    rows = _rows(buckets, now, settings)
    wait = max((row.blocked_until - now for row in rows.values()), default=0.0)
    return max(1, math.ceil(wait)) if wait > 0 else None


def admit(buckets: list[Bucket], now: float, settings: ServerSettings, database: peewee.Database) -> int | None:
    """Like :func:`wait_for`, and when the attempt may go ahead, claim the next wait of every bucket already past
    its free failures (a success releases it, a failure keeps it)."""
    wait = wait_for(buckets, now, settings)
    if wait is not None:
        return wait
    rows = _rows(buckets, now, settings)
    with database.atomic():
        for bucket in buckets:
            row = rows.get(bucket.key)
            if row is None or row.failures < bucket.free:
                continue
            claimed = LoginThrottle.update(blocked_until=now + delay(row.failures + 1, bucket.free, settings)).where(
                (LoginThrottle.key == bucket.key) & (LoginThrottle.blocked_until <= now)).execute()
            if not claimed:  # another attempt claimed it first
                return wait_for(buckets, now, settings) or 1
    return None


def record_failure(buckets: list[Bucket], now: float, settings: ServerSettings, database: peewee.Database) -> None:
    """Count a failed login in every bucket and start its wait."""
    with database.atomic():
        rows = _rows(buckets, now, settings)
        for bucket in buckets:
            row = rows.get(bucket.key)
            failures = 1 if row is None else row.failures + 1
            values = {"failures": failures, "last_failure_at": now,
                      "blocked_until": now + delay(failures, bucket.free, settings)}
            LoginThrottle.insert(key=bucket.key, **values).on_conflict(
                conflict_target=[LoginThrottle.key],
                update={getattr(LoginThrottle, field): value for field, value in values.items()},
            ).execute()


def record_success(buckets: list[Bucket], settings: ServerSettings) -> None:
    """Forget the failures of the account from this address or device. The address keeps its count, so logging in
    to one's own account does not reset a spray across others, but gets back the wait this attempt claimed."""
    keys = [b.key for b in buckets if b.cleared_by_success]
    if keys:
        LoginThrottle.delete().where(LoginThrottle.key.in_(keys)).execute()
    release([b for b in buckets if not b.cleared_by_success], settings)


def release(buckets: list[Bucket], settings: ServerSettings) -> None:
    """Give back the waits :func:`admit` claimed for an attempt that did not fail (the provider could not answer):
    each bucket waits again only as its own failures say."""
    free = {b.key: b.free for b in buckets}
    for row in LoginThrottle.select().where(LoginThrottle.key.in_(list(free))):
        # unchanged failures only: a failure recorded meanwhile set the wait it needs
        LoginThrottle.update(blocked_until=row.last_failure_at + delay(row.failures, free[row.key], settings)).where(
            (LoginThrottle.key == row.key) & (LoginThrottle.failures == row.failures)).execute()
