"""Queue rules on the database alone: admission by GPU set and output folder, FIFO without overtaking, moves;
the job tables match their models; outputs are served only from inside the output folder."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import peewee
import pytest

from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace
from simpletuner.ui.app import create_app
from simpletuner.ui.auth.apikeys import create_api_key
from simpletuner.ui.auth.users import create_user
from simpletuner.ui.db import migrate, open_database
from simpletuner.ui.db.models import bind_models
from simpletuner.ui.jobs import queue
from simpletuner.ui.jobs.models import JOB_MODELS, Job, bind_job_models


@pytest.fixture
def database(tmp_path: Path) -> peewee.Database:
    db = open_database(None, tmp_path)
    db.connect()
    migrate(db)
    bind_models(db)
    bind_job_models(db)
    yield db
    db.close()


def submit(db: peewee.Database, name: str, gpus: tuple[str, ...] | None, output: str | None = None) -> Job:
    return queue.submit(db, queue.JobRequest(environment=name, output_dir=output or f"/out/{name}", gpu_ids=gpus,
                                             launcher_args=None, owner_id=None, owner_name=None))


def test_the_job_tables_match_their_models(database: peewee.Database) -> None:
    for model in JOB_MODELS:
        columns = {c.name for c in database.get_columns(model._meta.table_name)}
        assert columns == {f.column_name for f in model._meta.sorted_fields}, model.__name__


def test_admission_by_gpu_set_and_output_folder_in_order(database: peewee.Database) -> None:
    a = submit(database, "a", ("0", "1"))
    b = submit(database, "b", ("1", "2"))  # shares GPU 1 with a
    c = submit(database, "c", ("3",))
    d = submit(database, "d", ("2",))  # free GPU, but b waits for GPU 2 and came first: no overtaking
    e = submit(database, "e", ("4",), output="/out/c")  # free GPU, same output folder as c
    f = submit(database, "f", None)  # every GPU
    assert [j.status for j in (a, b, c, d, e, f)] == ["running", "queued", "running", "queued", "queued", "queued"]
    assert queue.positions() == {b.id: 1, d.id: 2, e.id: 3, f.id: 4}
    queue.move(database, f.id, 1)
    assert list(queue.positions()) == [f.id, b.id, d.id, e.id]
    Job.update(status="completed").where(Job.id.in_([a.id, c.id])).execute()
    assert queue.admit_ready(database) == [f.id]  # first in line takes every GPU; the rest wait behind it
    Job.update(status="completed").where(Job.id == f.id).execute()
    assert queue.admit_ready(database) == [b.id, e.id]  # d still waits behind b for GPU 2
    assert queue.request_stop(database, d.id, "ops") == "cancelled"
    with pytest.raises(LookupError):
        queue.request_stop(database, d.id, "ops")
    assert queue.request_stop(database, b.id, "ops") == "stopping"
    with pytest.raises(ValueError, match="between 1 and"):
        queue.move(database, submit(database, "g", ("1",)).id, 5)


def test_files_are_served_only_from_the_output_folder(database: peewee.Database, tmp_path: Path) -> None:
    out = tmp_path / "output" / "run"
    (out / "validation").mkdir(parents=True)
    (out / "validation" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nimage")
    (tmp_path / "secret.txt").write_text("secret")
    (out / "escape.txt").symlink_to(tmp_path / "secret.txt")
    job = submit(database, "run", ("0",), output=str(out))
    with database.atomic():
        user = create_user(username="vic", email=None, password=None, levels=["viewer"], now=1.0, rounds=4)
        key = create_api_key(user=user, name="t", now=1.0)[0]
    app = create_app(database=database, registry=Registry(load_entry_points=False), workspace=Workspace(tmp_path))
    client = falcon.testing.TestClient(app, headers={"X-API-Key": key})
    image = client.simulate_get(f"/api/jobs/{job.id}/files/validation/a.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.endswith(b"image")
    assert client.simulate_get(f"/api/jobs/{job.id}/files/escape.txt").status_code == 403
    assert client.simulate_get(f"/api/jobs/{job.id}/files/validation/../../../secret.txt").status_code == 403
    assert client.simulate_get(f"/api/jobs/{job.id}/files/missing.png").status_code == 404
    assert client.simulate_get(f"/api/jobs/{job.id + 1}/files/a.png").status_code == 404
    assert client.simulate_get("/api/jobs?status=bogus").status_code == 400
    listed = client.simulate_get("/api/jobs?status=running").json["jobs"]
    assert [j["id"] for j in listed] == [job.id]
