"""Jobs on a real Ray cluster (a head node on loopback) through a live server: trained, followed over the event
stream and downloaded like a local job, stopped through the Jobs API, re-attached after a server restart, two
processes placed by Ray with the torch.distributed rendezvous, and the start API's executor overrides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from jobs.conftest import write_env
from jobs.live import LiveServer, make_users

from .conftest import cluster_path
from .journeys import caching_or_ended, ended, restart_and_reattach, start
from .ray_cluster import RayCluster

pytestmark = pytest.mark.timeout(420)


def serve(workspace: Path, keys: dict[str, str], cluster: RayCluster, held_site: Path, model: Path) -> LiveServer:
    # The server finds the cluster through RAY_ADDRESS, the ray executor's default address.
    server = LiveServer(workspace, keys, {"RAY_ADDRESS": cluster.address, "PATH": cluster_path(),
                                          "PYTHONPATH": str(held_site), "OMP_NUM_THREADS": "1"})
    server.allow_roots(model)
    return server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, ray_cluster: RayCluster, held_site: Path,
         tiny_flux: Path) -> Any:
    workspace = tmp_path_factory.mktemp("ray") / "ws"
    workspace.mkdir()
    server = serve(workspace, make_users(workspace), ray_cluster, held_site, tiny_flux)
    yield server
    server.stop()


def ray_status(cluster: RayCluster, submission_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(cluster.address).get_job_status(submission_id).value)


def test_a_ray_job_trains_streams_and_downloads_like_a_local_one(live: LiveServer, ray_cluster: RayCluster,
                                                                 tiny_flux: Path) -> None:
    write_env(live.workspace, tiny_flux, "on-ray", executor="ray", ray_gpus_per_process=0, max_train_steps=2)
    job_id = start(live, "on-ray", "ray")
    events = live.read_events("rita", ended(job_id), job=job_id, timeout=300)
    kinds = [e["event"] for e in events]
    for kind in ("job_started", "run_started", "step", "finished"):
        assert kind in kinds, kinds
    started = next(e for e in events if e["event"] == "job_started")
    assert started["executor"] == "ray" and started["executor_ref"].startswith(f"simpletuner-{job_id}-")
    assert events[-1]["status"] == "completed" and events[-1]["exit_code"] == 0, events[-1]
    assert ray_status(ray_cluster, started["executor_ref"]) == "SUCCEEDED"
    status, job = live.call("GET", f"/api/jobs/{job_id}", user="rita")
    assert status == 200 and job["status"] == "completed" and job["step"] == 2
    assert any("Trained 2 steps" in line for line in job["log_tail"]), job["log_tail"]
    model = job["outputs"]["model"]
    status, raw = live.call("GET", model["url"], user="rita")
    assert status == 200 and raw == Path(model["path"]).read_bytes() and len(raw) > 1000


def test_a_ray_job_is_stopped_through_the_jobs_api(live: LiveServer, ray_cluster: RayCluster,
                                                   tiny_flux: Path) -> None:
    write_env(live.workspace, tiny_flux, "ray-held", held=True, executor="ray", ray_gpus_per_process=0)
    job_id = start(live, "ray-held", "ray")
    events = live.read_events("rita", caching_or_ended(job_id), job=job_id, timeout=240)
    assert events[-1]["event"] != "job_finished", events[-1]
    ref = next(e for e in events if e["event"] == "job_started")["executor_ref"]
    assert ray_status(ray_cluster, ref) == "RUNNING"
    status, body = live.call("POST", "/api/training/stop", {"job_id": job_id}, "rita")
    assert status == 202, body
    last = live.read_events("rita", ended(job_id), job=job_id, timeout=120)[-1]
    assert last["status"] == "stopped", last
    deadline = time.monotonic() + 30
    while ray_status(ray_cluster, ref) != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray_status(ray_cluster, ref) == "STOPPED"


def test_a_restarted_server_reattaches_to_its_ray_job(tmp_path: Path, ray_cluster: RayCluster, held_site: Path,
                                                      tiny_flux: Path) -> None:
    restart_and_reattach(tmp_path, tiny_flux, "ray",
                         lambda workspace, keys: serve(workspace, keys, ray_cluster, held_site, tiny_flux),
                         lambda ref: ray_status(ray_cluster, ref), ("PENDING", "RUNNING"), ray_gpus_per_process=0)


def test_two_processes_are_placed_by_ray_with_the_rendezvous(live: LiveServer, tiny_flux: Path) -> None:
    write_env(live.workspace, tiny_flux, "ray-ddp", images=6, executor="ray", ray_gpus_per_process=0,
              num_processes=2, max_train_steps=2)
    job_id = start(live, "ray-ddp", "ray")
    events = live.read_events("rita", ended(job_id), job=job_id, timeout=360)
    assert events[-1]["status"] == "completed", (events[-1], live.call("GET", f"/api/jobs/{job_id}/log",
                                                                        user="rita")[1])
    run = next(e for e in events if e["event"] == "run_started")
    assert run["num_processes"] == 2


def test_the_start_api_overrides_the_executor_within_the_users_rights(live: LiveServer, ray_cluster: RayCluster,
                                                                      tiny_flux: Path) -> None:
    write_env(live.workspace, tiny_flux, "choose-here", max_train_steps=1)
    live.adopt("choose-here", "rita")

    def refused(body: dict[str, Any], user: str = "rita") -> str:
        status, answer = live.call("POST", "/api/training/start", {"environment": "choose-here", **body}, user)
        assert status == 422, answer
        return " ".join(answer["problems"])

    # A cluster address chooses where jobs (and their data) go: only trusted users may give one.
    assert "config.trusted" in refused({"executor": "ray", "executor_options": {"address": ray_cluster.address}})
    # ... nor write one into an environment.
    status, answer = live.call("PATCH", "/api/environments/choose-here/config",
                               {"values": {"executor": "ray", "ray_address": ray_cluster.address}}, "rita")
    assert status == 422 and "config.trusted" in answer["field_errors"]["ray_address"][0], answer
    assert "no such option" in refused({"executor": "ray", "executor_options": {"adress": "x"}})
    assert "unknown executor 'kubernetes'" in refused({"executor": "kubernetes"})
    assert "expected a Slurm time limit" in refused({"executor": "slurm", "executor_options": {"time_limit": "soon"}})
    status, answer = live.call("POST", "/api/training/start", {"environment": "choose-here", "executor": "ray",
                                                               "executor_options": {"address": ray_cluster.address,
                                                                                    "gpus_per_process": 0}}, "root")
    assert status == 202 and answer["executor"] == "ray", answer
    last = live.read_events("root", ended(answer["job_id"]), job=answer["job_id"], timeout=300)[-1]
    assert last["status"] == "completed", last
