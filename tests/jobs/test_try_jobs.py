"""Trying a finished job's model on a live server: ``POST /api/jobs/{id}/try`` queues a short job on the training
job's GPU set through the same queue, runner and permissions; its images land in the run's tries/ folder and are
listed, with download links, under the training job's outputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import write_env
from .live import LiveServer

pytestmark = pytest.mark.timeout(600)


def _finished(live: LiveServer, job_id: int, user: str = "rita") -> dict:
    events = live.read_events(user, lambda e: e["job_id"] == job_id and e["event"] == "job_finished", job=job_id)
    return events[-1]


def _image(live: LiveServer, url: str) -> np.ndarray:
    status, raw = live.call("GET", url, user="vic")
    assert status == 200 and isinstance(raw, bytes)
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.int16)


def test_a_finished_job_is_tried_beside_the_base_model(live: LiveServer) -> None:
    write_env(live.workspace, live.model, "tryme", max_train_steps=6, learning_rate=5e-2, lora_rank=8,  # type: ignore[attr-defined]
              checkpointing_steps=3, validation_resolution="64", validation_num_inference_steps=2, images=2)
    live.adopt("tryme", "rita")
    status, body = live.call("POST", "/api/training/start", {"environment": "tryme"}, "rita")
    assert status == 202, body
    trained_id = body["job_id"]

    # refused before anything is queued: a job still running has no final model; a viewer may not start jobs
    early = live.call("POST", f"/api/jobs/{trained_id}/try", {"prompts": ["a red square"]}, "rita")
    assert early[0] in (409,), early
    assert _finished(live, trained_id)["status"] == "completed"
    assert live.call("POST", f"/api/jobs/{trained_id}/try", {"prompts": ["x"]}, "vic")[0] == 403
    bad = live.call("POST", f"/api/jobs/{trained_id}/try", {"prompts": ["x"], "strength": 9}, "rita")
    assert bad[0] == 400 and "strength" in bad[1]["description"]
    missing = live.call("POST", f"/api/jobs/{trained_id}/try", {"prompts": ["x"], "checkpoint": "checkpoint-99"},
                        "rita")
    assert missing[0] == 409 and "checkpoint-99" in missing[1]["description"]

    status, body = live.call("POST", f"/api/jobs/{trained_id}/try",
                             {"prompts": ["a red square", "a blue circle"], "strength": 1.0, "seed": 3}, "rita")
    assert status == 202, body
    try_id = body["job_id"]
    assert _finished(live, try_id)["status"] == "completed"

    status, tried = live.call("GET", f"/api/jobs/{try_id}", user="vic")
    assert status == 200 and tried["kind"] == "try" and tried["task"]["job_id"] == trained_id
    status, trained = live.call("GET", f"/api/jobs/{trained_id}", user="vic")
    assert status == 200 and trained["kind"] == "train"
    assert Path(tried["run_dir"]).parent == Path(trained["run_dir"]) / "tries"
    (attempt,) = trained["outputs"]["tries"]
    assert attempt["request"]["prompts"] == ["a red square", "a blue circle"] and attempt["settings"]["seed"] == 3
    for pair in attempt["images"]:
        base, mine = _image(live, pair["base"]), _image(live, pair["trained"])
        assert base.shape == (64, 64, 3) and np.abs(base - mine).mean() > 1.0

    # a checkpoint at strength 0 renders the base model exactly
    status, body = live.call("POST", f"/api/jobs/{trained_id}/try",
                             {"prompts": ["a red square"], "strength": 0, "seed": 3, "checkpoint": "checkpoint-3"},
                             "rita")
    assert status == 202, body
    assert _finished(live, body["job_id"])["status"] == "completed"
    newest = live.call("GET", f"/api/jobs/{trained_id}", user="vic")[1]["outputs"]["tries"][0]
    pair = newest["images"][0]
    assert np.array_equal(_image(live, pair["base"]), _image(live, pair["trained"]))
    assert np.array_equal(_image(live, pair["base"]), _image(live, attempt["images"][0]["base"]))
    assert live.call("POST", f"/api/jobs/{body['job_id']}/try", {"prompts": ["x"]}, "rita")[0] == 400
