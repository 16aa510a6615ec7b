"""The job supervisor killed while the server runs: the server starts it again, the new one adopts the running job,
and the job still finishes (its stop goes through) — nothing is left "running" with nobody watching."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import kill_leftover_jobs, write_env
from .live import LiveServer, make_users, start_held, supervisors

pytestmark = pytest.mark.timeout(240)


def test_a_killed_supervisor_is_started_again_and_adopts_the_running_job(tmp_path: Path, held_site: Path,
                                                                         tiny_flux: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_env(workspace, tiny_flux, "held", held=True)
    server = LiveServer(workspace, make_users(workspace), {"PYTHONPATH": str(held_site)})
    try:
        job_id = start_held(server, tiny_flux)
        [first] = supervisors(workspace)
        os.kill(first, signal.SIGKILL)

        deadline = time.monotonic() + 60
        while not (replacement := [pid for pid in supervisors(workspace) if pid != first]):
            assert time.monotonic() < deadline, "no new supervisor within 60 s"
            time.sleep(0.2)
        adopted = server.read_events("rita", lambda e: e["event"] == "job_adopted", job=job_id)[-1]
        assert adopted["job_id"] == job_id and replacement
        assert server.call("GET", "/api/training/status", user="vic")[1]["status"] == "running"

        assert server.call("POST", "/api/training/stop", {"job_id": job_id}, "rita")[0] == 202
        end = server.read_events("rita", lambda e: e["event"] == "job_finished", job=job_id)[-1]
        assert end["status"] == "stopped"
    finally:
        server.stop()
        kill_leftover_jobs(workspace)
