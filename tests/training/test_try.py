"""Trying a trained model: `simpletuner try` renders each prompt with the run's LoRA (or LyCORIS network, or a
checkpoint) beside the base model's image of the same seed, into the run's tries/ folder; strength 0 is the base
model exactly; bad requests are refused naming the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from simpletuner.core.config import load_environment
from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.plugins import Registry
from simpletuner.core.training.lycoris import LYCORIS_CONFIG_FILE
from simpletuner.core.trying import TryError, TryRequest, new_try_folder, try_model
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(300)

#: A short run that moves the LoRA far enough to change a 2-step render of the tiny Flux.
TRAIN = {"images": 2, "train_batch_size": 1, "max_train_steps": 6, "learning_rate": 5e-2, "lora_rank": 8,
         "checkpointing_steps": 3, "validation_resolution": "64", "validation_num_inference_steps": 2}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def try_cli(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "simpletuner.core.cli.main", "--workspace", str(workspace.root),
                           "try", *args], capture_output=True, text=True, timeout=240, env=env)


def test_try_renders_the_lora_beside_the_base_model(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                   workspace: Workspace) -> None:
    name = make_env("tried", **TRAIN)
    result = run_env(name)
    done = try_cli(workspace, "--env", name, "--run-dir", str(result.run_dir), "--prompt", "a red square",
                   "--prompt", "a blue circle", "--seed", "3")
    assert done.returncode == 0, done.stderr
    (folder,) = (result.run_dir / "tries").iterdir()
    assert f"Try folder: {folder}" in done.stdout
    manifest = json.loads((folder / "try.json").read_text())
    assert [pair["prompt"] for pair in manifest["images"]] == ["a red square", "a blue circle"]
    assert manifest["settings"] | {"seed": 3, "steps": 2, "width": 64, "height": 64} == manifest["settings"]
    assert manifest["weights"] == str(result.output)
    for pair in manifest["images"]:
        base, trained = pixels(folder / pair["base"]), pixels(folder / pair["trained"])
        assert base.shape == (64, 64, 3) and np.abs(base - trained).mean() > 1.0, "the LoRA changes the image"
    events = [json.loads(line)["event"] for line in (folder / "events.jsonl").read_text().splitlines()]
    assert events.count("try_progress") == 4 and events[-1] == "finished"

    # strength 0 is the base model, a checkpoint is tried instead of the final model
    zero = try_cli(workspace, "--env", name, "--run-dir", str(result.run_dir), "--prompt", "a red square",
                   "--seed", "3", "--strength", "0", "--checkpoint", "checkpoint-3")
    assert zero.returncode == 0, zero.stderr
    latest = sorted((result.run_dir / "tries").iterdir())[-1]
    zero_manifest = json.loads((latest / "try.json").read_text())
    assert zero_manifest["weights"] == str(result.run_dir / "checkpoint-3" / "pytorch_lora_weights.safetensors")
    pair = zero_manifest["images"][0]
    assert np.array_equal(pixels(latest / pair["base"]), pixels(latest / pair["trained"]))
    assert np.array_equal(pixels(latest / pair["base"]), pixels(folder / manifest["images"][0]["base"]))


def test_a_lycoris_network_is_tried_at_its_strength(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                    workspace: Workspace) -> None:
    name = make_env("lokr", lora_type="lycoris", **TRAIN)
    lokr = {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 4,
            "apply_preset": {"target_module": ["FluxAttention", "FeedForward"]}}
    (workspace.configs_dir / name / LYCORIS_CONFIG_FILE).write_text(json.dumps(lokr))
    result = run_env(name)
    registry = Registry()
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry)
    images = {}
    for strength in (0.0, 1.0):
        folder = new_try_folder(result.run_dir)
        request = TryRequest(prompts=("a green triangle",), strength=strength, seed=5)
        pair = try_model(loaded, workspace, registry, result.run_dir, request, folder)["images"][0]
        images[strength] = (pixels(folder / pair["base"]), pixels(folder / pair["trained"]))
    assert np.array_equal(*images[0.0])
    assert np.array_equal(images[0.0][0], images[1.0][0]) and np.abs(images[1.0][0] - images[1.0][1]).mean() > 1.0


def test_a_full_rank_run_is_tried_from_its_model_and_its_checkpoints(make_env: Callable[..., str],
                                                                     run_env: Callable[..., Any],
                                                                     workspace: Workspace) -> None:
    name = make_env("full", **{**TRAIN, "model_type": "full", "learning_rate": 1e-3})
    result = run_env(name)
    registry = Registry()
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry)
    tried = {}
    for checkpoint in (None, "checkpoint-3"):
        folder = new_try_folder(result.run_dir)
        request = TryRequest(prompts=("a yellow star",), seed=9, checkpoint=checkpoint)
        manifest = try_model(loaded, workspace, registry, result.run_dir, request, folder)
        pair = manifest["images"][0]
        tried[checkpoint] = (pixels(folder / pair["base"]), pixels(folder / pair["trained"]), manifest["weights"])
    final_base, final_trained, final_weights = tried[None]
    step3_base, step3_trained, step3_weights = tried["checkpoint-3"]
    assert final_weights == str(result.output) and "checkpoint-3" in step3_weights
    assert np.array_equal(final_base, step3_base)  # the same base image, seed and settings
    assert np.abs(final_base - final_trained).mean() > 1.0, "the trained weights change the image"
    assert not np.array_equal(final_trained, step3_trained), "six steps are not three"
    with pytest.raises(TryError, match="strength applies to LoRA and LyCORIS runs"):
        try_model(loaded, workspace, registry, result.run_dir, TryRequest(prompts=("x",), strength=0.5),
                  new_try_folder(result.run_dir))


def test_a_run_without_the_asked_weights_is_refused(make_env: Callable[..., str], workspace: Workspace) -> None:
    name = make_env("untrained", **TRAIN)
    run_dir = workspace.root / "output" / "untrained" / "never-ran"
    run_dir.mkdir(parents=True)
    done = try_cli(workspace, "--env", name, "--run-dir", str(run_dir), "--prompt", "x", "--checkpoint",
                   "checkpoint-3")
    assert done.returncode != 0
    assert "has no checkpoint checkpoint-3" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("data", "message"), [
    ({}, "prompts: give a list of 1 to 8 non-empty strings"),
    ({"prompts": [""]}, "prompts: give a list"),
    ({"prompts": ["p"] * 9}, "at most 8 prompts"),
    ({"prompts": ["p"], "strength": 3}, "strength: a number from 0"),
    ({"prompts": ["p"], "strength": True}, "strength: a number from 0"),
    ({"prompts": ["p"], "steps": 0}, "steps: an integer from 1 to 200"),
    ({"prompts": ["p"], "checkpoint": "../../etc"}, "checkpoint: a checkpoint folder name"),
    ({"prompts": ["p"], "colour": "red"}, "unknown keys ['colour']"),
    ([], "expected a JSON object"),
])
def test_bad_requests_name_the_problem(data: Any, message: str) -> None:
    with pytest.raises(TryError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        TryRequest.from_json(data)
    assert TryRequest.from_json({"prompts": "one"}).prompts == ("one",)
