"""Counting open event streams across every worker of the server, in the ``open_streams`` table.

Each worker refreshes ``seen_at`` of its own rows every few seconds; a row whose worker stopped refreshing it (the
worker was killed) stops counting after :data:`STALE_AFTER_S` and is deleted by the next worker that looks.
"""

from __future__ import annotations

import os
import secrets

import attrs

from simpletuner.ui.db.models import OpenStream

#: A row not refreshed for this long belongs to a worker that is gone.
STALE_AFTER_S = 30.0


class TooManyStreams(Exception):
    """Opening one more stream would pass a limit; the message names the limit and what to do."""


@attrs.frozen(kw_only=True)
class StreamLimits:
    """At most ``per_user`` open streams per user and ``per_key`` per API key, across all workers."""

    per_user: int = 8
    per_key: int = 4


def worker_token() -> str:
    """A name for this worker process's rows, unique even when a process id is reused."""
    return f"{os.getpid()}-{secrets.token_hex(6)}"


def open_stream(worker: str, user_id: int, api_key_id: int | None, limits: StreamLimits, now: float) -> int:
    """Record a stream of ``user_id`` (through ``api_key_id`` when given) and return its row id; raises
    :class:`TooManyStreams` when the user or the key already has as many open streams as allowed."""
    database = OpenStream._meta.database
    fresh = OpenStream.seen_at > now - STALE_AFTER_S
    with database.atomic():
        OpenStream.delete().where(OpenStream.seen_at <= now - STALE_AFTER_S).execute()
        if api_key_id is not None:
            held = OpenStream.select().where(fresh & (OpenStream.api_key_id == api_key_id)).count()
            if held >= limits.per_key:
                raise TooManyStreams(f"this API key already has {held} open event streams (at most "
                                     f"{limits.per_key}); close one before opening another")
        held = OpenStream.select().where(fresh & (OpenStream.user_id == user_id)).count()
        if held >= limits.per_user:
            raise TooManyStreams(f"you already have {held} open event streams (at most {limits.per_user}, e.g. "
                                 f"browser tabs on the Training page); close one before opening another")
        return int(OpenStream.insert(worker=worker, user_id=user_id, api_key_id=api_key_id, opened_at=now,
                                     seen_at=now).execute())


def close_stream(row_id: int) -> None:
    """Forget a stream that ended."""
    OpenStream.delete().where(OpenStream.id == row_id).execute()


def refresh_worker(worker: str, now: float) -> None:
    """Mark every stream of ``worker`` as still open."""
    OpenStream.update(seen_at=now).where(OpenStream.worker == worker).execute()


def close_worker(worker: str) -> None:
    """Forget every stream of ``worker`` (it is shutting down)."""
    OpenStream.delete().where(OpenStream.worker == worker).execute()
