"""Migration 3: per-user UI state (the active environment of the header switcher).

The model below is a frozen copy of the table as it was at version 3 (this file never changes).
"""

from __future__ import annotations

import peewee

VERSION = 3
NAME = "user preferences"


def _models(database: peewee.Database) -> list[type[peewee.Model]]:
    class _Base(peewee.Model):
        class Meta:
            legacy_table_names = False

    class User(_Base):
        class Meta:
            table_name = "users"

    class UserPreference(_Base):
        user = peewee.ForeignKeyField(User, unique=True, on_delete="CASCADE")
        active_environment = peewee.CharField(max_length=100, null=True)
        updated_at = peewee.DoubleField()

        class Meta:
            table_name = "user_preferences"

    database.bind([User, UserPreference], bind_refs=False, bind_backrefs=False)
    return [UserPreference]


def apply(database: peewee.Database) -> None:
    """Create the ``user_preferences`` table."""
    database.create_tables(_models(database))
