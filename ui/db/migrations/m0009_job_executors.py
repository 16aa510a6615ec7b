"""Migration 9: where each job runs (``training_jobs.executor``, ``executor_options``, ``executor_ref``,
``resources``, ``cluster``).

``executor`` names the executor plugin (null: ``local``, as for every job recorded before); ``executor_options`` are
its options as the job was started with them; ``executor_ref`` is the executor's reference to the submitted job (a
process, a Ray submission, a Slurm job), through which a restarted server re-attaches; ``resources`` are the nodes,
processes and GPUs the job asked for; ``cluster`` is true for a job handed to a cluster's scheduler, which the
server's per-GPU-set queue does not hold back.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

VERSION = 9
NAME = "job executors"


def apply(database: peewee.Database) -> None:
    """Add the five columns to ``training_jobs``.

    ``cluster`` defaults to false in the schema too, so that rows written by an older server version (or by hand)
    stay valid.
    """
    migrator = SchemaMigrator.from_database(database)
    migrate(migrator.add_column("training_jobs", "executor", peewee.CharField(max_length=64, null=True)),
            migrator.add_column("training_jobs", "executor_options", peewee.TextField(null=True)),
            migrator.add_column("training_jobs", "executor_ref", peewee.TextField(null=True)),
            migrator.add_column("training_jobs", "resources", peewee.TextField(null=True)),
            migrator.add_column("training_jobs", "cluster",
                                peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])))
