"""Reads reused while the database is unchanged: a commit by any other connection, or a write by the reading
connection itself, makes the next call read again; transactions and other databases always read."""

from __future__ import annotations

from pathlib import Path

import peewee
import pytest

from simpletuner.ui.db import migrate, open_database
from simpletuner.ui.db.models import bind_models
from simpletuner.ui.db.unchanged import UnchangedCache
from simpletuner.ui.jobs import views
from simpletuner.ui.jobs.models import Job, bind_job_models


@pytest.fixture
def database(tmp_path: Path) -> peewee.Database:
    db = open_database(None, tmp_path)
    db.connect()
    migrate(db)
    bind_models(db)
    bind_job_models(db)
    yield db
    db.close()


def counting_read(database: peewee.Database) -> tuple[list[int], object]:
    calls: list[int] = []

    def read() -> int:
        calls.append(1)
        return database.execute_sql("SELECT COUNT(*) FROM training_jobs").fetchone()[0]

    return calls, read


def test_reads_again_only_after_a_change(database: peewee.Database, tmp_path: Path) -> None:
    cache = UnchangedCache()
    calls, read = counting_read(database)
    assert [cache.get(database, "n", read) for _ in range(3)] == [0, 0, 0] and len(calls) == 1

    # Another connection (another worker, the supervisor) commits: the next call sees it.
    other = open_database(None, tmp_path)
    other.connect()
    other.execute_sql("INSERT INTO training_jobs (environment, status, phase, queue_rank, output_dir, created_at, "
                      "events_offset) VALUES ('a', 'queued', 'queued', 1, '/o', 1, 0)")
    assert cache.get(database, "n", read) == 1 and len(calls) == 2
    assert cache.get(database, "n", read) == 1 and len(calls) == 2

    # This connection writes itself.
    Job.update(status="running").execute()
    Job.create(environment="b", status="queued", output_dir="/p", created_at=2.0)
    assert cache.get(database, "n", read) == 2 and len(calls) == 3
    # A write that changes no row leaves the data, and the cached value, as they were.
    Job.update(status="x").where(Job.id == 999).execute()
    assert cache.get(database, "n", read) == 2 and len(calls) == 3

    # A commit while reading: the value is handed out but not kept.
    def racing_read() -> int:
        value = read()
        other.execute_sql("DELETE FROM training_jobs WHERE environment = 'a'")
        return value

    assert cache.get(database, "m", racing_read) == 2
    assert cache.get(database, "m", read) == 1
    other.close()

    # Inside a transaction the snapshot decides: always read.
    before = len(calls)
    with database.atomic():
        cache.get(database, "n", read)
        cache.get(database, "n", read)
    assert len(calls) == before + 2


def test_a_new_connection_never_reuses_the_old_ones_values(database: peewee.Database, tmp_path: Path) -> None:
    cache = UnchangedCache()
    calls, read = counting_read(database)
    cache.get(database, "n", read)
    database.close()
    other = open_database(None, tmp_path)
    other.connect()
    other.execute_sql("INSERT INTO training_jobs (environment, status, phase, queue_rank, output_dir, created_at, "
                      "events_offset) VALUES ('a', 'queued', 'queued', 1, '/o', 1, 0)")
    other.close()
    database.connect()
    assert cache.get(database, "n", read) == 1 and len(calls) == 2


def test_other_databases_always_read() -> None:
    cache = UnchangedCache()
    calls: list[int] = []
    postgres = peewee.PostgresqlDatabase("never-connected")
    assert [cache.get(postgres, "n", lambda: calls.append(1) or len(calls)) for _ in range(2)] == [1, 2]


def test_the_status_follows_commits_of_other_processes(database: peewee.Database, tmp_path: Path) -> None:
    assert views.training_status()["status"] == "idle"
    supervisor = open_database(None, tmp_path)
    supervisor.connect()
    supervisor.execute_sql("INSERT INTO training_jobs (environment, status, phase, queue_rank, output_dir, "
                           "created_at, started_at, events_offset, step) "
                           "VALUES ('a', 'running', 'training', 1, '/o', 1, 2, 0, 5)")
    status = views.training_status()
    assert status["status"] == "running" and status["job"]["step"] == 5
    supervisor.execute_sql("UPDATE training_jobs SET step = 6")
    assert views.training_status()["job"]["step"] == 6
    supervisor.close()
