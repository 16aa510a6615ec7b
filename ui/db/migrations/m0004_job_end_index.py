"""Migration 4: an index on the jobs' end time, so the status finds the last finished job without a scan.

``GET /api/training/status`` (which every open page and script polls) reads the newest ended job; with this index
that is one step backwards through the index however long the job history grows.
"""

from __future__ import annotations

import peewee

VERSION = 4
NAME = "index of job end times"


def apply(database: peewee.Database) -> None:
    """Create the ``training_jobs_ended_at`` index."""
    database.execute_sql('CREATE INDEX IF NOT EXISTS "training_jobs_ended_at" ON "training_jobs" ("ended_at")')
