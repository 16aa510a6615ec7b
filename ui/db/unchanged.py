"""Reusing a read for as long as the database has not changed (SQLite), for the reads every client polls.

On SQLite, ``PRAGMA data_version`` on a connection changes whenever another connection — in any process: the other
workers, the job supervisor, the CLI — has committed since the connection last asked, and the connection's own
``total_changes`` grows with each row it writes. While both stay the same, every table reads exactly as before, so a
read's result can be handed out again without running it: never stale, at the cost of one pragma. Other databases
(PostgreSQL) run the read each time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import peewee

T = TypeVar("T")


def _stamp(database: peewee.Database) -> tuple[Any, int, int] | None:
    """What identifies the database's state as this thread's connection sees it, or None where that is unknown."""
    if not isinstance(database, peewee.SqliteDatabase) or database.in_transaction():
        return None  # inside a transaction the snapshot, not the committed state, is what a read sees
    connection = database.connection()
    if not isinstance(connection, sqlite3.Connection):
        return None
    version = connection.execute("PRAGMA data_version").fetchone()[0]
    return connection, version, connection.total_changes


class UnchangedCache:
    """Results of named reads, per thread (each thread has its own connection), dropped when the database changes.

    Values are shared between the requests of a thread: cache data that callers do not modify (rows, not the
    answer built from them).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, database: peewee.Database, name: str, read: Callable[[], T]) -> T:
        """``read()``, or its result from an earlier call when the database has not changed since."""
        stamp = _stamp(database)
        if stamp is None:
            return read()
        local = self._local
        # The stamp holds the connection itself (compared by identity), not its id: a new connection can never pass
        # for the old one, whose counters it does not share.
        if getattr(local, "stamp", None) != stamp:
            local.stamp, local.values = stamp, {}
        if name in local.values:
            return local.values[name]  # type: ignore[no-any-return]
        value = read()
        # Kept only if nothing was committed while reading: the value is then at least as new as the stamp, and
        # any later commit moves the stamp.
        if _stamp(database) == stamp:
            local.values[name] = value
        return value
