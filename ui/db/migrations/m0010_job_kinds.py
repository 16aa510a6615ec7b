"""Migration 10: what a job does (``training_jobs.kind``, ``task``).

``kind`` is ``train`` (every job recorded before) or ``try`` (images from a finished run's model beside the base
model's); ``task`` holds what a ``try`` job renders and the run it renders from.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

VERSION = 10
NAME = "job kinds"


def apply(database: peewee.Database) -> None:
    """Add the two columns to ``training_jobs``; existing rows are training jobs."""
    migrator = SchemaMigrator.from_database(database)
    migrate(migrator.add_column("training_jobs", "kind",
                                peewee.CharField(max_length=16, default="train",
                                                 constraints=[peewee.SQL("DEFAULT 'train'")])),
            migrator.add_column("training_jobs", "task", peewee.TextField(null=True)))
