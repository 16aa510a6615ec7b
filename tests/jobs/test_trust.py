"""Privileged values on a live server: a command an admin approved runs with the job; the same environment edited
on disk while its job waits in the queue is refused by the training process itself, and the command never runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .conftest import write_env
from .live import LiveServer

pytestmark = pytest.mark.timeout(300)


def _marker_script(marker: Path) -> str:
    return f"{sys.executable} -c \"import pathlib,sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])\" " \
           f"{marker} {{global_step}}"


def _approve(live: LiveServer, environment: str) -> None:
    access = live.call("GET", f"/api/environments/{environment}/access", user="root")[1]
    status, body = live.call("POST", f"/api/environments/{environment}/approve", {"digest": access["digest"]},
                             "root")
    assert status == 200, body


def _finished(live: LiveServer, job_id: int) -> dict:
    events = live.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == "job_finished", job=job_id)
    return events[-1]


def test_an_approved_command_runs_and_an_edit_in_the_queue_is_refused_by_the_trainer(live: LiveServer) -> None:
    ran, planted = live.workspace / "ran.txt", live.workspace / "planted.txt"
    write_env(live.workspace, live.model, "hooked", max_train_steps=2, checkpointing_steps=1,  # type: ignore[attr-defined]
              gpu_ids="2", post_checkpoint_script=_marker_script(ran))
    live.adopt("hooked", "rita")
    status, body = live.call("POST", "/api/training/start", {"environment": "hooked"}, "rita")
    assert status == 409 and body["pending"][0]["keys"] == ["config: post_checkpoint_script"], body

    _approve(live, "hooked")
    status, body = live.call("POST", "/api/training/start", {"environment": "hooked"}, "rita")
    assert status == 202, body
    assert _finished(live, body["job_id"])["status"] == "completed"
    assert ran.read_text() in ("1", "2")

    # hold GPU 2 with another job, queue the approved environment behind it, then change its command on disk
    write_env(live.workspace, live.model, "blocker", held=True, gpu_ids="2")  # type: ignore[attr-defined]
    live.adopt("blocker", "rita")
    blocker = live.call("POST", "/api/training/start", {"environment": "blocker"}, "rita")[1]["job_id"]
    queued = live.call("POST", "/api/training/start", {"environment": "hooked"}, "rita")[1]
    assert queued["status"] == "queued", queued
    config_file = live.workspace / "configs" / "hooked" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(config | {"post_checkpoint_script": _marker_script(planted)}))
    assert live.call("POST", "/api/training/stop", {"job_id": blocker}, "rita")[0] == 202

    finished = _finished(live, queued["job_id"])
    assert finished["status"] == "failed"
    log = live.call("GET", f"/api/jobs/{queued['job_id']}/log", user="rita")[1]
    assert b"privileged values that are not approved" in log
    assert not planted.exists()
