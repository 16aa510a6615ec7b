"""Migration 8: the event streams each server worker holds open (``open_streams``), so that the per-user and
per-key stream limits hold across every worker of the server.

A row is one open stream: its owner, the API key it came with (if any), the worker that serves it and when that
worker last said it was alive; a worker refreshes its rows every few seconds, so the rows of a worker that died
stop counting on their own. The model below is a frozen copy of the table as it was at version 8.
"""

from __future__ import annotations

import peewee

VERSION = 8
NAME = "open event streams"


def _models(database: peewee.Database) -> list[type[peewee.Model]]:
    class OpenStream(peewee.Model):
        worker = peewee.CharField(max_length=64, index=True)
        user_id = peewee.IntegerField(index=True)
        api_key_id = peewee.IntegerField(null=True, index=True)
        opened_at = peewee.DoubleField()
        seen_at = peewee.DoubleField()

        class Meta:
            table_name = "open_streams"

    database.bind([OpenStream], bind_refs=False, bind_backrefs=False)
    return [OpenStream]


def apply(database: peewee.Database) -> None:
    """Create ``open_streams``."""
    database.create_tables(_models(database))
