"""Faults while a job runs: a request worker killed is replaced and the job goes on; the server's master killed
outright leaves the job running, and the next server adopts it — no job is ever left "running" with no process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from simpletuner.plugins.executors.processes import descendants, is_running

from .conftest import kill_leftover_jobs, write_env
from .live import LiveServer, make_users, start_held, supervisors

pytestmark = pytest.mark.timeout(240)


def _workers(server: LiveServer) -> list[int]:
    """The gunicorn workers: the master's children other than the supervisor."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return [int(pid) for pid in children if int(pid) not in supervisors(server.workspace)]


def test_a_killed_worker_is_replaced_and_the_job_goes_on(tmp_path: Path, held_site: Path, tiny_flux: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_env(workspace, tiny_flux, "held", held=True)
    server = LiveServer(workspace, make_users(workspace), {"PYTHONPATH": str(held_site)})
    try:
        job_id = start_held(server, tiny_flux)
        before = _workers(server)
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(set(_workers(server)) - set(before)) < 1:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.2)
        assert server.call("GET", "/health")[0] == 200
        assert server.call("GET", f"/api/jobs/{job_id}", user="vic")[1]["status"] == "running"
        assert server.call("POST", "/api/training/stop", {"job_id": job_id}, "rita")[0] == 202
        end = server.read_events("rita", lambda e: e["event"] == "job_finished", job=job_id)[-1]
        assert end["status"] == "stopped"
    finally:
        server.stop()
        kill_leftover_jobs(workspace)


def test_a_killed_master_leaves_the_job_to_the_next_server(tmp_path: Path, held_site: Path,
                                                           tiny_flux: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    keys = make_users(workspace)
    env = {"PYTHONPATH": str(held_site)}
    write_env(workspace, tiny_flux, "held", held=True)
    first = LiveServer(workspace, keys, env)
    second = None
    try:
        job_id = start_held(first, tiny_flux)
        pid = first.call("GET", f"/api/jobs/{job_id}", user="rita")[1]["pid"]
        workers = _workers(first)
        first.stop(signal.SIGKILL)
        for worker in workers:  # a master killed outright leaves its workers to exit on their own
            if is_running(worker):
                os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while supervisors(workspace):  # the supervisor sees its server gone and exits
            assert time.monotonic() < deadline, "the supervisor outlived its server"
            time.sleep(0.2)
        assert is_running(pid) and descendants(pid), "the job must outlive its server"

        second = LiveServer(workspace, keys, env)
        adopted = second.read_events("vic", lambda e: e["event"] == "job_adopted", job=job_id)[-1]
        assert adopted["pid"] == pid
        assert second.call("POST", "/api/training/stop", {"job_id": job_id}, "rita")[0] == 202
        end = second.read_events("rita", lambda e: e["event"] == "job_finished", job=job_id)[-1]
        assert end["status"] == "stopped" and not is_running(pid)
    finally:
        if second is not None:
            second.stop()
        kill_leftover_jobs(workspace)
