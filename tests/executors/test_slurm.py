"""Jobs on a real Slurm cluster (slurmctld + slurmd on this host) through a live server: trained and followed like a
local job, stopped with scancel, re-attached after a server restart, two processes started by srun with the
torch.distributed rendezvous, and Slurm's refusals reported."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from jobs.conftest import write_env
from jobs.live import LiveServer, make_users

from .conftest import cluster_path
from .journeys import caching_or_ended, ended, restart_and_reattach, start
from .slurm_cluster import SlurmCluster

pytestmark = pytest.mark.timeout(420)


def serve(workspace: Path, keys: dict[str, str], slurm: SlurmCluster, held_site: Path, model: Path) -> LiveServer:
    server = LiveServer(workspace, keys, {**slurm.environ, "PATH": cluster_path(), "PYTHONPATH": str(held_site),
                                          "OMP_NUM_THREADS": "1"})
    server.allow_roots(model)
    return server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, slurm: SlurmCluster, held_site: Path, tiny_flux: Path) -> Any:
    workspace = tmp_path_factory.mktemp("slurm") / "ws"
    workspace.mkdir()
    server = serve(workspace, make_users(workspace), slurm, held_site, tiny_flux)
    yield server
    server.stop()


def squeue(slurm: SlurmCluster, ref: str) -> str:
    done = subprocess.run(["squeue", "-h", "-j", ref, "-o", "%T"], capture_output=True, text=True,
                          env={**os.environ, **slurm.environ})
    return done.stdout.strip()


def test_a_slurm_job_trains_and_reports_like_a_local_one(live: LiveServer, slurm: SlurmCluster,
                                                         tiny_flux: Path) -> None:
    write_env(live.workspace, tiny_flux, "on-slurm", executor="slurm", slurm_gpus_per_node=0, max_train_steps=2,
              slurm_time_limit="10")
    job_id = start(live, "on-slurm", "slurm")
    events = live.read_events("rita", ended(job_id), job=job_id, timeout=300)
    kinds = [e["event"] for e in events]
    for kind in ("job_started", "run_started", "step", "finished"):
        assert kind in kinds, kinds
    started = next(e for e in events if e["event"] == "job_started")
    assert started["executor"] == "slurm" and started["executor_ref"].isdigit()
    assert events[-1]["status"] == "completed" and events[-1]["exit_code"] == 0, events[-1]
    status, job = live.call("GET", f"/api/jobs/{job_id}", user="rita")
    assert status == 200 and job["status"] == "completed" and job["step"] == 2
    assert job["outputs"]["model"]["path"].endswith("pytorch_lora_weights.safetensors")
    assert any("Trained 2 steps" in line for line in job["log_tail"]), job["log_tail"]
    script = (live.workspace / "jobs" / str(job_id) / "job.sbatch").read_text()
    assert "#SBATCH --time=10" in script and "--gpus-per-node" not in script
    assert squeue(slurm, started["executor_ref"]) == ""


def test_a_slurm_job_is_stopped_with_scancel(live: LiveServer, slurm: SlurmCluster, tiny_flux: Path) -> None:
    write_env(live.workspace, tiny_flux, "slurm-held", held=True, executor="slurm", slurm_gpus_per_node=0)
    job_id = start(live, "slurm-held", "slurm")
    events = live.read_events("rita", caching_or_ended(job_id), job=job_id, timeout=240)
    assert events[-1]["event"] != "job_finished", events[-1]
    ref = next(e for e in events if e["event"] == "job_started")["executor_ref"]
    assert squeue(slurm, ref) == "RUNNING"
    status, body = live.call("POST", "/api/training/stop", {"job_id": job_id}, "rita")
    assert status == 202, body
    last = live.read_events("rita", ended(job_id), job=job_id, timeout=120)[-1]
    assert last["status"] == "stopped", last
    deadline = time.monotonic() + 30
    while squeue(slurm, ref) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert squeue(slurm, ref) == ""


def test_a_restarted_server_reattaches_to_its_slurm_job(tmp_path: Path, slurm: SlurmCluster, held_site: Path,
                                                        tiny_flux: Path) -> None:
    restart_and_reattach(tmp_path, tiny_flux, "slurm",
                         lambda workspace, keys: serve(workspace, keys, slurm, held_site, tiny_flux),
                         lambda ref: squeue(slurm, ref), ("PENDING", "RUNNING"), slurm_gpus_per_node=0)


def test_two_processes_start_through_srun_with_the_rendezvous(live: LiveServer, tiny_flux: Path) -> None:
    write_env(live.workspace, tiny_flux, "slurm-ddp", images=6, executor="slurm", slurm_gpus_per_node=0,
              num_processes=2, max_train_steps=2)
    job_id = start(live, "slurm-ddp", "slurm")
    events = live.read_events("rita", ended(job_id), job=job_id, timeout=360)
    assert events[-1]["status"] == "completed", (events[-1], live.call("GET", f"/api/jobs/{job_id}/log",
                                                                        user="rita")[1])
    run = next(e for e in events if e["event"] == "run_started")
    assert run["num_processes"] == 2
    script = (live.workspace / "jobs" / str(job_id) / "job.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "srun --kill-on-bad-exit=1" in script


def test_slurm_refusals_fail_the_job_with_sbatchs_reason(live: LiveServer, tiny_flux: Path) -> None:
    write_env(live.workspace, tiny_flux, "slurm-nowhere", executor="slurm", slurm_gpus_per_node=0,
              slurm_partition="no-such-partition")
    job_id = start(live, "slurm-nowhere", "slurm")
    last = live.read_events("rita", ended(job_id), job=job_id, timeout=60)[-1]
    assert last["status"] == "failed" and "sbatch refused the job" in last["error"], last
    assert "partition" in last["error"].lower()
