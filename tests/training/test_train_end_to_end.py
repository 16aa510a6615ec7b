"""A tiny Flux LoRA run end to end: the loss falls, the LoRA loads into FluxPipeline and changes its images, the
event stream and the file header tell what happened."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training_helpers import events_of, flux_pipeline_with_lora

from simpletuner.core.training.outputs import TRAINING_METADATA_KEY
from simpletuner.core.workspace import Workspace


def test_overfit_run_lowers_the_loss_and_the_lora_loads(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                         workspace: Workspace, tiny_flux: Path) -> None:
    # one image, a fixed caption, a strong learning rate and every linear layer: the model can memorise it
    name = make_env("overfit", images=1, train_batch_size=1, max_train_steps=100, learning_rate=1e-2,
                    flow_schedule_shift=10.0, lora_rank=16, lora_alpha=32, lora_target_preset="all-linear",
                    lr_scheduler="cosine", checkpointing_steps=40, max_grad_norm=1.0)
    result = run_env(name)
    losses = [e["loss"] for e in events_of(result.run_dir, "step")]
    assert len(losses) == 100
    initial, final = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert final / initial < 0.7, (initial, final)

    kinds = [e["event"] for e in events_of(result.run_dir)]
    assert kinds[0] == "scan_progress" and kinds[-1] == "finished"
    assert kinds[kinds.index("datasets_scanned") - 1] == "scan_progress"  # the scan's last report comes first
    assert kinds.count("checkpoint_saved") == 2 and "run_started" in kinds
    step = events_of(result.run_dir, "step")[-1]
    assert {"loss", "lr", "grad_norm", "it_per_s", "eta_s", "data_wait_s", "epoch"} <= set(step)
    assert step["step"] == 100 and step["eta_s"] == 0

    from safetensors import safe_open

    with safe_open(str(result.output), framework="pt") as handle:
        header = handle.metadata()
        assert all(key.startswith("transformer.") for key in handle.keys())
    training = json.loads(header[TRAINING_METADATA_KEY])
    assert training["step"] == 100 and training["base_model"] == str(tiny_flux)
    assert training["config"]["lora_rank"] == 16

    _, change = flux_pipeline_with_lora(tiny_flux, result.output)
    assert change > 1e-3
