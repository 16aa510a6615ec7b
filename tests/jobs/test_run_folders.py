"""Two jobs of one environment on a live server: each writes into a run folder of its own that the server chose at
launch, and the history's download links of the first job keep serving exactly the files it made after the second
job ran."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from simpletuner.core.training.run_folders import read_run

from .conftest import write_env
from .live import LiveServer

pytestmark = pytest.mark.timeout(600)


def _run_job(live: LiveServer, environment: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    status, body = live.call("POST", "/api/training/start", {"environment": environment}, "rita")
    assert status == 202, body
    job_id = body["job_id"]
    events = live.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == "job_finished", job=job_id)
    assert events[-1]["status"] == "completed", events[-1]
    status, job = live.call("GET", f"/api/jobs/{job_id}", user="vic")
    assert status == 200
    return job, events


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_two_jobs_of_one_environment_keep_their_own_downloads(live: LiveServer) -> None:
    write_env(live.workspace, live.model, "twins", max_train_steps=2, checkpointing_steps=1)  # type: ignore[attr-defined]
    live.adopt("twins", "rita")

    first, events = _run_job(live, "twins")
    run_one = Path(first["run_dir"])
    record = read_run(run_one)
    assert record is not None and record.environment == "twins" and record.job_id == first["id"]
    assert run_one.parent == Path(first["output_dir"]) and run_one.name.endswith(f"-twins-job{first['id']}")
    started = next(e for e in events if e["event"] == "job_started")
    assert started["run_dir"] == first["run_dir"]  # known to the server before the process wrote anything
    model_one = first["outputs"]["model"]
    assert Path(model_one["path"]) == run_one / "pytorch_lora_weights.safetensors"
    [checkpoint] = first["outputs"]["checkpoints"]
    weights = next(f for f in checkpoint["files"] if f["name"] == "pytorch_lora_weights.safetensors")
    written = {model_one["url"]: _sha(Path(model_one["path"]).read_bytes()),
               weights["url"]: _sha((run_one / "checkpoint-1" / "pytorch_lora_weights.safetensors").read_bytes())}

    second, _ = _run_job(live, "twins")
    run_two = Path(second["run_dir"])
    assert run_two != run_one and run_two.parent == run_one.parent
    model_two = second["outputs"]["model"]
    assert Path(model_two["path"]) == run_two / "pytorch_lora_weights.safetensors"
    assert model_two["url"] != model_one["url"]

    for url, digest in written.items():  # job 1's links serve what job 1 wrote, byte for byte
        status, raw = live.call("GET", url, user="vic")
        assert status == 200 and _sha(raw) == digest, url
    status, raw = live.call("GET", model_two["url"], user="vic")
    assert status == 200 and raw == Path(model_two["path"]).read_bytes()
    assert _sha(raw) != written[model_one["url"]]  # a model of its own (each job draws its own seed)
    status, _ = live.call("GET", f"/api/jobs/{first['id']}/files/..%2F{run_two.name}%2Fpytorch_lora_weights"
                                 ".safetensors", user="vic")
    assert status == 403
