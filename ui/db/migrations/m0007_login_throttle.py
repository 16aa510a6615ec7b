"""Migration 7: login throttling by growing delays instead of a lockout window (``login_throttle``).

Each row is one bucket of failed logins — an account from one address, one address, or one known device — with
its failure count, the time of its last failure and the time before which it refuses further attempts. The
``login_failures`` table of the lockout window is dropped: its counts only ever mattered for fifteen minutes.

The model below is a frozen copy of the table as it was at version 7 (this file never changes).
"""

from __future__ import annotations

import peewee

VERSION = 7
NAME = "login throttle with growing delays"


def _models(database: peewee.Database) -> list[type[peewee.Model]]:
    class LoginThrottle(peewee.Model):
        key = peewee.CharField(max_length=300, primary_key=True)
        failures = peewee.IntegerField(default=0)
        last_failure_at = peewee.DoubleField()
        blocked_until = peewee.DoubleField()

        class Meta:
            table_name = "login_throttle"

    database.bind([LoginThrottle], bind_refs=False, bind_backrefs=False)
    return [LoginThrottle]


def apply(database: peewee.Database) -> None:
    """Create ``login_throttle`` and drop ``login_failures``."""
    database.create_tables(_models(database))
    database.execute_sql('DROP TABLE IF EXISTS "login_failures"')
