"""A server restarted while jobs run: the live job is adopted (and can still be stopped), the one whose processes
died while the server was down is marked failed — nothing stays "running"; a second server on the same workspace
is refused."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from simpletuner.plugins.executors.processes import is_running, signal_tree

from .conftest import kill_leftover_jobs, write_env
from .live import LiveServer, make_users


def test_restart_adopts_live_jobs_and_fails_dead_ones(tmp_path: Path, held_site: Path, tiny_flux: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    keys = make_users(workspace)
    env = {"PYTHONPATH": str(held_site)}
    write_env(workspace, tiny_flux, "keep", held=True, gpu_ids="0")
    write_env(workspace, tiny_flux, "lose", held=True, gpu_ids="1")
    first = LiveServer(workspace, keys, env)
    try:
        ids = {}
        first.allow_roots(tiny_flux)
        for name in ("keep", "lose"):
            first.adopt(name, "rita")
            status, body = first.call("POST", "/api/training/start", {"environment": name}, "rita")
            assert status == 202 and body["status"] == "running"
            ids[name] = body["job_id"]
            first.read_events("rita", lambda e, i=body["job_id"]: e["job_id"] == i and e["event"] == "job_started",
                              job=body["job_id"])
        pids = {name: first.call("GET", f"/api/jobs/{i}", user="rita")[1]["pid"] for name, i in ids.items()}
        assert first.stop() == 0
        # the jobs outlive the server; one of them dies while no server watches
        assert all(is_running(pid) for pid in pids.values())
        signal_tree(pids["lose"], signal.SIGKILL)

        second = LiveServer(workspace, keys, env)
        try:
            status = second.call("GET", "/api/training/status", user="vic")[1]
            assert [j["id"] for j in status["jobs"]] == [ids["keep"]]
            lost = second.call("GET", f"/api/jobs/{ids['lose']}", user="vic")[1]
            assert lost["status"] == "failed" and "no supervisor was watching" in lost["error"]
            events = second.read_events("vic", lambda e: e["event"] == "job_adopted", job=ids["keep"])
            assert events[-1]["pid"] == pids["keep"]

            with pytest.raises(AssertionError, match="already runs the jobs"):
                LiveServer(workspace, keys, env)

            assert second.call("POST", "/api/training/stop", {"job_id": ids["keep"]}, "rita")[0] == 202
            end = second.read_events("rita", lambda e: e["event"] == "job_finished", job=ids["keep"])[-1]
            # the wrapper, though no longer the supervisor's child, recorded the SIGTERM exit
            assert end["status"] == "stopped" and end["signal"] == signal.SIGTERM
            assert not is_running(pids["keep"])
            assert second.call("GET", "/api/training/status", user="vic")[1]["status"] == "idle"
        finally:
            second.stop()
    finally:
        first.stop()
        kill_leftover_jobs(workspace)
