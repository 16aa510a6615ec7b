"""Jobs on a live server: the demo trained through the API and followed over server-sent events, a trainer killed
by SIGKILL, stops while caching and while training (no process left behind), a DeepSpeed job trained and stopped
through ``accelerate launch``, invalid configs refused."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace
from simpletuner.plugins.executors.processes import OOM_EXPLANATION, descendants, group_members, is_running

from .conftest import job_processes, write_env
from .live import LiveServer


def finished(job_id: int):  # type: ignore[no-untyped-def]
    return lambda e: e["job_id"] == job_id and e["event"] == "job_finished"


def start(live: LiveServer, environment: str, user: str = "rita") -> int:
    live.adopt(environment, user)
    status, body = live.call("POST", "/api/training/start", {"environment": environment}, user)
    assert status == 202, body
    return body["job_id"]


def test_demo_trains_through_the_api_and_its_lora_is_served(live: LiveServer) -> None:
    from simpletuner.core.cli.demo_commands import DEMO_ENV, create_demo

    shutil.copytree(live.model, live.workspace / "models" / "tiny-flux")  # type: ignore[attr-defined]
    create_demo(Workspace(live.workspace), Registry(), steps=1)
    live.adopt(DEMO_ENV, "rita")
    status, body = live.call("POST", "/api/training/start", {"environment": DEMO_ENV}, "rita")
    assert status == 202 and body["status"] == "running" and body["position"] is None, body
    job_id = body["job_id"]

    events = live.read_events("rita", finished(job_id), job=job_id)
    kinds = [e["event"] for e in events]
    for kind in ("job_queued", "job_admitted", "job_started", "datasets_scanned", "cache_progress", "run_started",
                 "step", "validation", "finished"):
        assert kind in kinds, (kind, kinds)
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["starting", "caching", "training", "finishing"]
    assert events[-1]["status"] == "completed" and events[-1]["exit_code"] == 0
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # the console output came live over the stream, in order, the last line before the job's end
    shown = [line for e in events if e["event"] == "log" for line in e["lines"]]
    assert any("Trained 1 steps" in line for line in shown), shown
    offsets = [e["offset"] for e in events if e["event"] == "log"]
    assert offsets == sorted(offsets)

    # Reconnecting with Last-Event-ID resumes right after that event.
    resumed = live.read_events("vic", finished(job_id), since=ids[3], job=job_id)
    assert [e["id"] for e in resumed] == ids[4:]

    status, job = live.call("GET", f"/api/jobs/{job_id}", user="vic")
    assert status == 200 and job["status"] == "completed" and job["owner"] == "rita" and job["step"] == 1
    model = job["outputs"]["model"]
    assert model["path"].endswith("pytorch_lora_weights.safetensors")
    # the job page's "Use this model" code loads the LoRA from the run folder
    assert f'pipeline.load_lora_weights("{Path(model["path"]).parent}")' in model["usage"]
    status, raw = live.call("GET", model["url"], user="vic")
    assert status == 200 and raw == Path(model["path"]).read_bytes()
    image = job["outputs"]["validation_images"][0]
    validation = next(e for e in events if e["event"] == "validation")
    assert image["url"] in validation["image_urls"]
    # the run recorded what it was configured with
    status, config = live.call("GET", f"/api/jobs/{job_id}/config", user="vic")
    assert status == 200 and config["settings"]["validation_prompt"]["value"] == "a red circle on a blue background"
    assert config["environment"] == DEMO_ENV and config["datasets"]
    # the gallery shows each image with its prompt and size
    assert image["prompt"] == "a red circle on a blue background" and image["width"] == image["height"] == 128
    status, png = live.call("GET", image["url"], user="vic")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("Trained 1 steps" in line for line in job["log_tail"])
    status, text = live.call("GET", f"/api/jobs/{job_id}/log?tail=5", user="vic")
    assert status == 200 and b"Trained 1 steps" in text
    status, _ = live.call("GET", f"/api/jobs/{job_id}/files/..%2F..%2Fsimpletuner.db", user="root")
    assert status == 403


def test_sigkill_of_the_trainer_fails_the_job_with_the_oom_explanation(live: LiveServer) -> None:
    write_env(live.workspace, live.model, "long")  # type: ignore[attr-defined]
    job_id = start(live, "long")
    live.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == "step", job=job_id)
    wrapper = live.call("GET", f"/api/jobs/{job_id}", user="rita")[1]["pid"]
    trainer = descendants(wrapper)[0]
    os.kill(trainer, signal.SIGKILL)
    end = live.read_events("rita", finished(job_id), job=job_id)[-1]
    assert end["status"] == "failed" and end["signal"] == signal.SIGKILL and end["error"] == OOM_EXPLANATION
    job = live.call("GET", f"/api/jobs/{job_id}", user="rita")[1]
    assert job["status"] == "failed" and job["exit_signal"] == 9 and job["log_tail"]
    assert job_processes(wrapper) == [] or not any(is_running(p) for p in job_processes(wrapper))


def _stop_in_phase(live: LiveServer, environment: str, phase_event: str, launched: bool = False) -> None:
    """Stop the job once ``phase_event`` came; ``launched``: its top process is ``accelerate launch``, which ends
    with the exit code 128 + SIGTERM when it is stopped."""
    job_id = start(live, environment)
    live.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == phase_event, job=job_id)
    wrapper = live.call("GET", f"/api/jobs/{job_id}", user="rita")[1]["pid"]
    running = job_processes(wrapper)
    assert len(running) >= 2  # the wrapper and the trainer
    status, body = live.call("POST", "/api/training/stop", {}, "rita")  # default: the caller's running job
    assert status == 202 and body == {"job_id": job_id, "status": "stopping"}
    end = live.read_events("rita", finished(job_id), job=job_id)[-1]
    # ended by the SIGTERM itself: the grace period (20 s) never ran out
    assert end["status"] == "stopped", end
    if launched:
        assert end["exit_code"] == 128 + signal.SIGTERM, end
    else:
        assert end["signal"] == signal.SIGTERM, end
    assert not any(is_running(pid) for pid in running)
    assert group_members(wrapper) == []
    job = live.call("GET", f"/api/jobs/{job_id}", user="vic")[1]
    assert job["stop_requested_by"] == "rita" and job["error"] == "stopped by rita"


def test_stop_while_caching_ends_every_process(live: LiveServer) -> None:
    write_env(live.workspace, live.model, "held", held=True)  # type: ignore[attr-defined]
    _stop_in_phase(live, "held", "datasets_scanned")


def test_stop_while_training_ends_every_process(live: LiveServer) -> None:
    write_env(live.workspace, live.model, "long")  # type: ignore[attr-defined]
    _stop_in_phase(live, "long", "step")


def test_a_deepspeed_job_trains_and_a_stopped_one_leaves_no_process(live: LiveServer) -> None:
    """A DeepSpeed job starts its trainer through ``accelerate launch`` (one process, a world of one): it trains to
    its LoRA, and a stop ends the launcher and the trainer under it."""
    write_env(live.workspace, live.model, "ds-short", deepspeed_config="zero2",  # type: ignore[attr-defined]
              max_train_steps=2)
    job_id = start(live, "ds-short")
    end = live.read_events("rita", finished(job_id), job=job_id)[-1]
    assert end["status"] == "completed", end
    job = live.call("GET", f"/api/jobs/{job_id}", user="rita")[1]
    assert job["step"] == 2 and job["outputs"]["model"]["path"].endswith("pytorch_lora_weights.safetensors")

    write_env(live.workspace, live.model, "ds-long", deepspeed_config="zero2")  # type: ignore[attr-defined]
    _stop_in_phase(live, "ds-long", "step", launched=True)


def test_invalid_environments_are_refused_before_anything_starts(live: LiveServer) -> None:
    write_env(live.workspace, live.model, "broken", lora_rank="eight", no_such_key=1)  # type: ignore[attr-defined]
    status, body = live.call("POST", "/api/training/start", {"environment": "broken"}, "rita")
    assert status == 422 and len(body["problems"]) >= 2, body
    assert any("lora_rank" in p for p in body["problems"]) and any("no_such_key" in p for p in body["problems"])
    assert live.call("GET", "/api/jobs?environment=broken", user="rita")[1]["jobs"] == []
    status, body = live.call("POST", "/api/training/start", {"environment": "nowhere"}, "rita")
    assert status == 404 and "no environment 'nowhere'" in body["description"]
    status, body = live.call("POST", "/api/training/start", {"environment": "../etc"}, "rita")
    assert status == 404 and "path separators" in body["description"]
    assert live.call("POST", "/api/training/start", {"environment": "x", "gpu": 1}, "rita")[0] == 400
