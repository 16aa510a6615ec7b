"""The training status that every client polls: the same answer as the job tables give through the ORM, from
statements that read indexes (never the whole job history)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import peewee
import pytest

from simpletuner.ui.db import migrate, open_database, prepared
from simpletuner.ui.db.models import bind_models
from simpletuner.ui.jobs import queue, views
from simpletuner.ui.jobs.models import ACTIVE, ENDED, Job, bind_job_models


@pytest.fixture
def database(tmp_path: Path) -> peewee.Database:
    db = open_database(None, tmp_path)
    db.connect()
    migrate(db)
    bind_models(db)
    bind_job_models(db)
    yield db
    db.close()


def submit(db: peewee.Database, name: str, gpus: tuple[str, ...] | None, now: float) -> Job:
    return queue.submit(db, queue.JobRequest(environment=name, output_dir=f"/out/{name}", gpu_ids=gpus,
                                             launcher_args=None, owner_id=None, owner_name="ada"), now=now)


def expected_status() -> dict[str, Any]:
    """The status as the ORM computes it, query by query."""
    active = list(Job.select().where(Job.status.in_(ACTIVE)).order_by(Job.started_at, Job.id))
    waiting = queue.queued_in_order()
    places = queue.positions(waiting)
    last = Job.select().where(Job.status.in_(ENDED)).order_by(Job.ended_at.desc(), Job.id.desc()).first()
    return {
        "status": "running" if active else "queued" if waiting else "idle",
        "job": views.summary(active[0]) if active else None,
        "jobs": [views.summary(job) for job in active],
        "queue": [views.summary(job, places[job.id]) for job in waiting],
        "last_finished": views.summary(last) if last is not None else None,
    }


def test_status_matches_the_job_tables_through_queue_moves_and_endings(database: peewee.Database) -> None:
    assert views.training_status() == expected_status() == {
        "status": "idle", "job": None, "jobs": [], "queue": [], "last_finished": None}
    a = submit(database, "a", ("0",), now=10.0)
    b = submit(database, "b", ("0",), now=11.0)
    c = submit(database, "c", ("0",), now=12.0)
    d = submit(database, "d", ("1",), now=5.0)  # admitted, with an earlier start than a
    Job.update(step=3, total_steps=10, loss=0.5).where(Job.id == a.id).execute()
    status = views.training_status()
    assert status == expected_status()
    assert status["status"] == "running" and status["job"]["id"] == d.id
    assert [j["id"] for j in status["jobs"]] == [d.id, a.id]
    assert [(j["id"], j["position"]) for j in status["queue"]] == [(b.id, 1), (c.id, 2)]
    assert status["jobs"][1]["gpu_ids"] == ["0"] and status["jobs"][1]["loss"] == 0.5

    queue.move(database, c.id, 1)
    assert [j["id"] for j in views.training_status()["queue"]] == [c.id, b.id]
    Job.update(status="completed", ended_at=20.0).where(Job.id == a.id).execute()
    Job.update(status="failed", ended_at=30.0, exit_code=1, error="boom").where(Job.id == d.id).execute()
    queue.request_stop(database, b.id, "ops", now=25.0)  # cancelled while waiting: it ended before d
    queue.admit_ready(database, now=31.0)
    status = views.training_status()
    assert status == expected_status()
    assert status["last_finished"]["id"] == d.id and status["last_finished"]["error"] == "boom"
    assert status["status"] == "running" and status["job"]["id"] == c.id and status["queue"] == []
    Job.update(status="stopped", ended_at=40.0).where(Job.id == c.id).execute()
    status = views.training_status()
    assert status == expected_status()
    assert (status["status"], status["last_finished"]["id"]) == ("idle", c.id)


def test_status_statements_read_indexes(database: peewee.Database) -> None:
    for index in range(30):  # some history and a queue, so the planner has something to choose from
        status = ("completed", "failed", "queued")[index % 3]
        Job.create(environment=f"e{index}", status=status, output_dir=f"/o{index}", created_at=index,
                   ended_at=float(index) if status != "queued" else None)
    for name, build in (("jobs.unfinished", views._unfinished), ("jobs.last_finished", views._last_finished)):
        sql, params = prepared.statement(database, name, build)
        plan = " | ".join(row[-1] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, (name, plan)
        assert "SCAN" not in plan.replace("SCAN t1 USING INDEX", ""), (name, plan)
