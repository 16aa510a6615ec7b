"""DeepSpeed ZeRO through ``simpletuner train``, on the CPU (DeepSpeed's CPU accelerator, gloo between processes)
as on GPUs: a LoRA under ZeRO-2 writes DeepSpeed's state into its checkpoints, resumes exactly where it stopped and
loads into the stock pipeline; full-rank training sharded by ZeRO-3 across two processes saves a model that
``from_pretrained`` reads; a planted pickle in DeepSpeed's checkpoint files stops the resume without running."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from checkpoint_helpers import plant_pickle
from training_helpers import events_of, flux_pipeline_with_lora

from simpletuner.core.training.outputs import LORA_FILE
from simpletuner.core.training.run_folders import run_folders
from simpletuner.core.training.saving import ACCELERATE_STATE
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(600)


def _train(run_cli: Callable[..., Any], name: str, *args: str) -> Any:
    result = run_cli("train", "--env", name, *args, env={"OMP_NUM_THREADS": "1"}, timeout=540)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _resume_from(workspace: Workspace, name: str, checkpoint: Path) -> None:
    config_path = workspace.configs_dir / name / "config.json"
    config = json.loads(config_path.read_text())
    config["resume_from_checkpoint"] = str(checkpoint)
    config_path.write_text(json.dumps(config))


def _losses(run: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events_of(run, "step")}


def test_zero2_lora_resumes_exactly_and_loads_into_the_stock_pipeline(
        make_env: Callable[..., str], run_cli: Callable[..., Any], workspace: Workspace, tiny_flux: Path) -> None:
    from safetensors.torch import load_file

    name = make_env("zero2", images=4, deepspeed_config="zero2", mixed_precision="bf16", train_batch_size=1,
                    max_train_steps=4, checkpointing_steps=2)
    _train(run_cli, name)
    [first] = [r.path for r in run_folders(workspace.root / "output" / name)]
    checkpoint = first / "checkpoint-2"
    assert sorted(p.name for p in (checkpoint / ACCELERATE_STATE / "pytorch_model").iterdir()) == [
        "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "mp_rank_00_model_states.pt"]

    _resume_from(workspace, name, checkpoint)
    _train(run_cli, name)
    [resumed] = [r.path for r in run_folders(workspace.root / "output" / name) if r.path != first]
    assert list(_losses(resumed)) == [3, 4]
    assert _losses(resumed) == {step: loss for step, loss in _losses(first).items() if step > 2}
    saved, again = load_file(str(first / LORA_FILE)), load_file(str(resumed / LORA_FILE))
    assert saved.keys() == again.keys() and all(saved[k].equal(again[k]) for k in saved)

    _, change = flux_pipeline_with_lora(tiny_flux, first / LORA_FILE)
    assert change > 0


def test_zero3_shards_full_rank_training_over_two_processes(
        make_env: Callable[..., str], run_cli: Callable[..., Any], workspace: Workspace, tiny_flux: Path) -> None:
    import torch
    from diffusers import FluxTransformer2DModel

    name = make_env("zero3", images=6, deepspeed_config="zero3", model_type="full", learning_rate=1e-4,
                    mixed_precision="bf16", train_batch_size=1, max_train_steps=2, checkpointing_steps=1)
    _train(run_cli, name, "--num_processes", "2")
    [run] = [r.path for r in run_folders(workspace.root / "output" / name)]
    started = events_of(run, "run_started")[0]
    assert started["num_processes"] == 2 and [e["step"] for e in events_of(run, "step")] == [1, 2]
    shards = sorted(p.name for p in (run / "checkpoint-1" / ACCELERATE_STATE / "pytorch_model").iterdir())
    assert shards == [f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)] + [
        f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in (0, 1)]

    trained = FluxTransformer2DModel.from_pretrained(str(run / "transformer")).state_dict()
    base = FluxTransformer2DModel.from_pretrained(str(tiny_flux), subfolder="transformer").state_dict()
    assert trained.keys() == base.keys()
    assert all(trained[k].shape == base[k].shape for k in base)  # whole weights, not one rank's shard
    assert any(not torch.equal(trained[k], base[k].to(trained[k].dtype)) for k in base)


def test_a_planted_pickle_in_deepspeeds_state_stops_the_resume_unrun(
        make_env: Callable[..., str], run_cli: Callable[..., Any], workspace: Workspace, tmp_path: Path) -> None:
    name = make_env("zero2-planted", images=2, deepspeed_config="zero2", train_batch_size=1, max_train_steps=2,
                    checkpointing_steps=1)
    _train(run_cli, name)
    [run] = [r.path for r in run_folders(workspace.root / "output" / name)]
    copy = workspace.root / "copies" / "checkpoint-1"
    shutil.copytree(run / "checkpoint-1", copy)
    planted = copy / ACCELERATE_STATE / "pytorch_model" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    assert planted.is_file()
    marker = tmp_path / "ran"
    plant_pickle(planted, marker)

    _resume_from(workspace, name, copy)
    result = run_cli("train", "--env", name, env={"OMP_NUM_THREADS": "1"}, timeout=540)
    assert result.returncode != 0
    assert (f"checkpoint file {planted} holds objects other than tensors and DeepSpeed's state"
            in result.stderr), result.stderr[-3000:]
    assert not marker.exists()


@pytest.mark.parametrize(("optimizer", "group"), [
    ("adamw", {"betas": (0.9, 0.95), "eps": 1e-6, "weight_decay": 0.02}),
    ("adafactor", {"beta1": None, "weight_decay": 0.02, "relative_step": False}),
])
def test_an_offloaded_optimizer_keeps_the_runs_settings(optimizer: str, group: dict[str, Any],
                                                        make_env: Callable[..., str], run_cli: Callable[..., Any],
                                                        workspace: Workspace) -> None:
    """With the optimizer states offloaded, the optimizer steps on the CPU: AdamW as DeepSpeed's CPU Adam with the
    run's betas, epsilon and decoupled weight decay, any other optimizer as itself (not swapped for a CPU Adam that
    keeps only the learning rate)."""
    from simpletuner.core.training.sharded_state import load_weights_only

    name = make_env(f"offload-{optimizer}", images=2, deepspeed_config="zero2-offload", optimizer=optimizer,
                    adam_beta2=0.95, adam_epsilon=1e-6, adam_weight_decay=0.02, train_batch_size=1,
                    max_train_steps=2, checkpointing_steps=1)
    _train(run_cli, name)
    [run] = [r.path for r in run_folders(workspace.root / "output" / name)]
    [states] = (run / "checkpoint-1" / ACCELERATE_STATE / "pytorch_model").glob("*optim_states.pt")
    [saved_group] = load_weights_only(str(states))["optimizer_state_dict"]["base_optimizer_state"]["param_groups"]
    assert {key: saved_group[key] for key in group} == group
