"""Migration 5: who owns each training environment, who it is shared with, and which privileged values an admin
approved (bound to a digest of those values).

The model below is a frozen copy of the table as it was at version 5 (this file never changes).
"""

from __future__ import annotations

import peewee

VERSION = 5
NAME = "environment owners and approvals"


def _models(database: peewee.Database) -> list[type[peewee.Model]]:
    class _Base(peewee.Model):
        class Meta:
            legacy_table_names = False

    class User(_Base):
        class Meta:
            table_name = "users"

    class EnvironmentRecord(_Base):
        name = peewee.CharField(max_length=100, primary_key=True)
        owner = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
        shared_with = peewee.TextField(default="[]")
        approved_digest = peewee.CharField(max_length=64, null=True)
        approved_by = peewee.CharField(max_length=64, null=True)
        approved_at = peewee.DoubleField(null=True)
        created_at = peewee.DoubleField()

        class Meta:
            table_name = "environment_records"

    database.bind([User, EnvironmentRecord], bind_refs=False, bind_backrefs=False)
    return [EnvironmentRecord]


def apply(database: peewee.Database) -> None:
    """Create the ``environment_records`` table."""
    database.create_tables(_models(database))
