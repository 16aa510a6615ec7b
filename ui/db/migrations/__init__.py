"""Ordered schema migrations, recorded in a ``schema_version`` table.

Each migration is a module ``mNNNN_<what>.py`` with ``VERSION``, ``NAME`` and ``apply(database)``, listed in
:data:`MIGRATIONS`. :func:`migrate` applies the ones a database has not seen, in order, inside one transaction that
holds the write lock, so two processes starting at once cannot both apply them. To add a table or a column in a
later release, add a module with the next version number that creates or alters only what it adds (never edit an
applied migration); data already stored stays where it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import ModuleType

import attrs
import peewee

from simpletuner.core.errors import SimpleTunerError
from simpletuner.ui.db.migrations import (
    m0001_initial,
    m0002_jobs,
    m0003_workflow,
    m0004_job_end_index,
    m0005_environment_records,
    m0006_job_run_folders,
    m0007_login_throttle,
    m0008_open_streams,
    m0009_job_executors,
    m0010_job_kinds,
)


class MigrationError(SimpleTunerError):
    """The database cannot be brought to the schema this version of SimpleTuner expects."""


@attrs.frozen
class Migration:
    """One schema change: its version number, a short name and the function that applies it."""

    version: int
    name: str
    apply: Callable[[peewee.Database], None] = attrs.field(eq=False, repr=False)

    @classmethod
    def from_module(cls, module: ModuleType) -> Migration:
        """The migration a ``mNNNN_*`` module declares."""
        return cls(module.VERSION, module.NAME, module.apply)


MIGRATIONS: tuple[Migration, ...] = (
    Migration.from_module(m0001_initial), Migration.from_module(m0002_jobs), Migration.from_module(m0003_workflow),
    Migration.from_module(m0004_job_end_index), Migration.from_module(m0005_environment_records),
    Migration.from_module(m0006_job_run_folders), Migration.from_module(m0007_login_throttle),
    Migration.from_module(m0008_open_streams), Migration.from_module(m0009_job_executors),
    Migration.from_module(m0010_job_kinds),
)


class SchemaVersion(peewee.Model):
    """A migration applied to this database."""

    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = peewee.DoubleField()

    class Meta:
        table_name = "schema_version"


def applied_versions(database: peewee.Database) -> list[int]:
    """Versions already applied to ``database`` (empty for a new database)."""
    with SchemaVersion.bind_ctx(database):
        if not SchemaVersion.table_exists():
            return []
        return [row.version for row in SchemaVersion.select().order_by(SchemaVersion.version)]


def migrate(database: peewee.Database, migrations: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
    """Apply every pending migration in order; returns those applied (empty when the schema is current)."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise MigrationError(f"migrations must have unique, increasing versions, got {versions}")
    with SchemaVersion.bind_ctx(database):
        database.create_tables([SchemaVersion], safe=True)
        with database.atomic():
            if isinstance(database, peewee.PostgresqlDatabase):
                database.execute_sql("LOCK TABLE schema_version IN EXCLUSIVE MODE")
            else:
                # BEGIN IMMEDIATE already holds SQLite's write lock; this write makes that explicit for any driver.
                SchemaVersion.update(name=SchemaVersion.name).where(SchemaVersion.version < 0).execute()
            done = {row.version for row in SchemaVersion.select()}
            newest_known = versions[-1] if versions else 0
            if done and max(done) > newest_known:
                raise MigrationError(
                    f"the database schema is at version {max(done)}, newer than this SimpleTuner knows "
                    f"({newest_known}); upgrade SimpleTuner or point --database-url at another database"
                )
            pending = [m for m in migrations if m.version not in done]
            for migration in pending:
                migration.apply(database)
                SchemaVersion.create(version=migration.version, name=migration.name, applied_at=time.time())
    return pending
