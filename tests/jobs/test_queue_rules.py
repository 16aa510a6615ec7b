"""Queue rules on the database alone: admission by GPU set and output folder, FIFO without overtaking, moves;
the job tables match their models; outputs are served only from inside the job's own run folder."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import peewee
import pytest

from simpletuner.core.plugins import Registry
from simpletuner.core.training.run_folders import create_run_folder
from simpletuner.core.workspace import Workspace
from simpletuner.ui.app import create_app
from simpletuner.ui.auth.apikeys import create_api_key
from simpletuner.ui.auth.users import create_user
from simpletuner.ui.db import migrate, open_database
from simpletuner.ui.db.models import bind_models
from simpletuner.ui.jobs import queue
from simpletuner.ui.jobs.models import JOB_MODELS, Job, bind_job_models


@pytest.fixture
def database(tmp_path: Path, database_url: str | None) -> peewee.Database:
    """The server's database, migrated: SQLite and PostgreSQL in turn."""
    db = open_database(database_url, tmp_path)
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


@pytest.mark.timeout(60)
def test_files_are_served_only_from_the_jobs_own_run_folder(database: peewee.Database, tmp_path: Path) -> None:
    out = tmp_path / "output" / "run"
    job = submit(database, "run", ("0",), output=str(out))
    other = submit(database, "run", ("1",), output=str(out))
    ours = create_run_folder(out, "run", job_id=job.id)
    theirs = create_run_folder(out, "run", job_id=other.id)
    Job.update(run_dir=str(ours), pid=1).where(Job.id == job.id).execute()
    Job.update(run_dir=str(theirs), pid=2).where(Job.id == other.id).execute()
    (ours / "validation").mkdir()
    (ours / "validation" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nimage")
    (theirs / "model.safetensors").write_bytes(b"theirs")
    (out / "shared.txt").write_text("in the output folder, outside any run folder")
    (tmp_path / "secret.txt").write_text("secret")
    (ours / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (ours / "sideways.safetensors").symlink_to(theirs / "model.safetensors")
    with database.atomic():
        user = create_user(username="vic", email=None, password=None, levels=["viewer"], now=1.0, rounds=4)
        key = create_api_key(user=user, name="t", now=1.0)[0]
    app = create_app(database=database, registry=Registry(load_entry_points=False), workspace=Workspace(tmp_path))
    client = falcon.testing.TestClient(app, headers={"X-API-Key": key})
    image = client.simulate_get(f"/api/jobs/{job.id}/files/validation/a.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.endswith(b"image")
    assert client.simulate_get(f"/api/jobs/{other.id}/files/model.safetensors").content == b"theirs"
    for path in ("escape.txt", "validation/../../../secret.txt", "sideways.safetensors", "../shared.txt",
                 f"../{theirs.name}/model.safetensors"):
        assert client.simulate_get(f"/api/jobs/{job.id}/files/{path}").status_code == 403, path
    assert client.simulate_get(f"/api/jobs/{job.id}/files/missing.png").status_code == 404
    assert client.simulate_get(f"/api/jobs/{other.id + 1}/files/a.png").status_code == 404
    assert client.simulate_get(f"/api/jobs/{job.id}").json["run_dir"] == str(ours)

    # a job that never started has no files; one from before run folders serves its output folder, but not the
    # run folders of later jobs in it
    waiting = submit(database, "run", ("2",), output=str(out))
    assert client.simulate_get(f"/api/jobs/{waiting.id}/files/shared.txt").status_code == 404
    Job.update(pid=3).where(Job.id == waiting.id).execute()
    assert client.simulate_get(f"/api/jobs/{waiting.id}/files/shared.txt").status_code == 200
    assert client.simulate_get(f"/api/jobs/{waiting.id}/files/{theirs.name}/model.safetensors").status_code == 403
    assert client.simulate_get("/api/jobs?status=bogus").status_code == 400
    listed = client.simulate_get("/api/jobs?status=running").json["jobs"]
    assert [j["id"] for j in listed] == [job.id]  # the others wait for the output folder
