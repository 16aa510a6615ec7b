"""The schema: migrations on SQLite and PostgreSQL, models matching the migrated tables, data kept across upgrades."""

from __future__ import annotations

import peewee
import pytest

from simpletuner.ui.auth.users import create_user, set_user_levels
from simpletuner.ui.db.connection import DatabaseConfigError, open_database
from simpletuner.ui.db.migrations import MIGRATIONS, Migration, MigrationError, applied_versions, migrate
from simpletuner.ui.db.models import ALL_MODELS, Level, User, bind_models


def test_migrations_create_exactly_the_models_schema(any_database: peewee.Database) -> None:
    assert [m.version for m in migrate(any_database)] == [m.version for m in MIGRATIONS]
    assert migrate(any_database) == []
    for model in ALL_MODELS:
        columns = {c.name for c in any_database.get_columns(model._meta.table_name)}
        assert columns == {f.column_name for f in model._meta.sorted_fields}, model.__name__


def test_model_operations_and_constraints(any_database: peewee.Database) -> None:
    migrate(any_database)
    bind_models(any_database)
    assert [lvl.name for lvl in Level.select().order_by(Level.rank)] == ["viewer", "researcher", "lead", "admin"]
    with any_database.atomic():
        user = create_user(username="Ada", email="ada@example.org", password="correct horse battery",
                           levels=["researcher"], now=1.0, rounds=4)
    with pytest.raises(peewee.IntegrityError), any_database.atomic():
        User.create(username="ADA", username_key="ada", created_at=1.0, updated_at=1.0)
    set_user_levels(user, ["lead", "viewer"])
    user.delete_instance()
    # ON DELETE CASCADE is real (SQLite needs foreign_keys on for that).
    assert any_database.execute_sql("SELECT COUNT(*) FROM user_levels").fetchone()[0] == 0


def test_a_later_migration_keeps_existing_data(any_database: peewee.Database) -> None:
    migrate(any_database)
    bind_models(any_database)
    create_user(username="ada", email=None, password=None, levels=["viewer"], now=1.0)

    def add_jobs(database: peewee.Database) -> None:
        class Job(peewee.Model):
            name = peewee.CharField()

            class Meta:
                table_name = "jobs"

        database.bind([Job])
        database.create_tables([Job])
        database.execute_sql('ALTER TABLE "users" ADD COLUMN "theme" VARCHAR(20)')

    next_version = MIGRATIONS[-1].version + 1
    later = (*MIGRATIONS, Migration(next_version, "jobs", add_jobs))
    assert [m.version for m in migrate(any_database, later)] == [next_version]
    assert applied_versions(any_database) == [*(m.version for m in MIGRATIONS), next_version]
    assert User.select().where(User.username == "ada").count() == 1
    assert "jobs" in any_database.get_tables()
    # An older release refuses a newer schema instead of damaging it.
    with pytest.raises(MigrationError, match="newer than this SimpleTuner knows"):
        migrate(any_database, MIGRATIONS)


def test_sqlite_pragmas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    database = open_database(None, tmp_path)
    database.connect()
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert (tmp_path / "simpletuner.db").exists()


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://", "postgresql://host"])
def test_bad_database_urls(tmp_path, url: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatabaseConfigError):
        open_database(url, tmp_path)
