"""Migration 6: each job's run folder (``training_jobs.run_dir``), where its process writes everything it makes.

Jobs recorded before this migration keep a null run folder: their files are in their output folder itself.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

VERSION = 6
NAME = "job run folders"


def apply(database: peewee.Database) -> None:
    """Add the nullable ``run_dir`` column to ``training_jobs``."""
    migrator = SchemaMigrator.from_database(database)
    migrate(migrator.add_column("training_jobs", "run_dir", peewee.TextField(null=True)))
