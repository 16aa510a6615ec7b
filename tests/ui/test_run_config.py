"""What a run was configured with: the snapshot a run writes (every option's value and source, datasets, LyCORIS
config, never a secret), ``GET /api/jobs/{id}/config`` and ``GET /api/jobs/compare`` for two runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simpletuner.core.config.loading import load_environment
from simpletuner.core.config.snapshot import RUN_CONFIG_FILE, SECRET_SET, write_run_snapshot
from simpletuner.core.environments import EnvironmentStore
from simpletuner.ui.jobs.models import Job

from .conftest import Client, UiServer

pytestmark = pytest.mark.timeout(60)

SECRET = "wJalrXUtnFEMI-K7MDENG-very-secret"


def _run(ui: UiServer, name: str, **config: object) -> Job:
    """A finished job whose run folder holds the snapshot of environment ``name`` (created with ``config``)."""
    workspace = ui.workspace
    folder = workspace.configs_dir / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_family": "flux", "output_dir": f"output/{name}",
                                                    "learning_rate": 1e-4, **config}))
    (workspace.datasets_dir / name).mkdir(parents=True)
    (folder / "multidatabackend.json").write_text(json.dumps([
        {"id": "pets", "instance_data_dir": f"datasets/{name}", "resolution": 256},
        {"id": "remote", "type": "s3", "aws_bucket_name": "pets", "aws_access_key_id": "AKIAEXAMPLE",
         "aws_secret_access_key": SECRET},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"}]))
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, ui.registry)
    run_dir = workspace.root / "output" / name / "run"
    run_dir.mkdir(parents=True)
    write_run_snapshot(run_dir, loaded, ui.registry)
    return Job.create(environment=name, status="completed", output_dir=str(run_dir.parent), run_dir=str(run_dir),
                      created_at=1.0, ended_at=2.0, step=10, total_steps=10, loss=0.25)


def test_the_snapshot_holds_values_and_sources_but_never_a_secret(ui: UiServer, admin: Client) -> None:
    job = _run(ui, "pets", lora_rank=8)
    written = (Path(job.run_dir) / RUN_CONFIG_FILE).read_text()
    assert SECRET not in written
    viewer = ui.user(admin, "vic", ["viewer"])
    answer = viewer.get(f"/api/jobs/{job.id}/config")
    assert answer.status_code == 200, answer.text
    snapshot = answer.json
    assert snapshot["environment"] == "pets"
    assert snapshot["settings"]["lora_rank"] == {"value": 8, "source": "env:pets"}
    assert snapshot["settings"]["learning_rate"]["value"] == 1e-4
    assert snapshot["settings"]["max_train_steps"]["source"] == "default"
    assert snapshot["labels"]["lora_rank"] and snapshot["labels"]["lora_rank"] != "lora_rank"
    remote = next(entry for entry in snapshot["datasets"] if entry["id"] == "remote")
    assert remote["aws_secret_access_key"] == SECRET_SET and remote["aws_access_key_id"] == "AKIAEXAMPLE"
    pets = next(entry for entry in snapshot["datasets"] if entry["id"] == "pets")
    assert pets["resolution"] == 256 and pets["instance_data_dir"].endswith("datasets/pets")


def test_two_runs_are_compared_setting_by_setting(ui: UiServer, admin: Client) -> None:
    first = _run(ui, "small", lora_rank=8)
    second = _run(ui, "large", lora_rank=32, learning_rate=3e-4)
    answer = admin.get(f"/api/jobs/compare?a={first.id}&b={second.id}")
    assert answer.status_code == 200, answer.text
    rows = {row["key"]: row for row in answer.json["settings"]}
    assert rows["lora_rank"]["a"] == 8 and rows["lora_rank"]["b"] == 32
    assert rows["learning_rate"]["b"] == 3e-4 and rows["learning_rate"]["source_b"] == "env:large"
    assert rows["output_dir"]["a"] == "output/small"
    assert "max_train_steps" not in rows  # only what differs
    assert answer.json["environments"] == ["small", "large"]
    assert [job["id"] for job in answer.json["jobs"]] == [first.id, second.id]
    assert answer.json["datasets"]["same"] is False  # each reads its own folder
    assert answer.json["lycoris_config"]["same"] is True


def test_missing_snapshots_and_bad_requests_say_why(ui: UiServer, admin: Client) -> None:
    old = Job.create(environment="old", status="completed", output_dir="/nowhere", run_dir="/nowhere/run",
                     created_at=1.0, ended_at=2.0)
    queued = Job.create(environment="new", status="queued", output_dir="/nowhere", created_at=1.0)
    answer = admin.get(f"/api/jobs/{old.id}/config")
    assert answer.status_code == 404 and "ran before" in answer.json["description"]
    assert "not started" in admin.get(f"/api/jobs/{queued.id}/config").json["description"]
    assert admin.get("/api/jobs/999/config").status_code == 404
    for query in ("", f"?a={old.id}", "?a=x&b=1"):
        answer = admin.get("/api/jobs/compare" + query)
        assert answer.status_code == 400 and ("a=ID&b=ID" in answer.text or "non-negative" in answer.text)
    assert admin.get(f"/api/jobs/compare?a={old.id}&b={queued.id}").status_code == 404
