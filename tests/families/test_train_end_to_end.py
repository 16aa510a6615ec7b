"""Sana and PixArt LoRA runs through the training engine on the tiny pipelines: the loss falls on an overfit run,
validation renders through the family's pipeline, and the saved LoRA loads into that pipeline and changes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from simpletuner.core.workspace import Workspace

from .helpers import train_on_shapes

STEPS = 150


def _train(workspace: Workspace, name: str, config: dict[str, Any]) -> Any:
    return train_on_shapes(workspace, name, {
        "lora_rank": 16, "lora_target_preset": "attention+mlp", "lora_dropout": 0.0, "learning_rate": 1e-2,
        "max_train_steps": STEPS, "num_train_epochs": 0,
        "train_batch_size": 1, "seed": 7, "resolution": 64, "resolution_type": "pixel", "mixed_precision": "no",
        "checkpointing_steps": 0, "max_grad_norm": 1.0, "output_dir": f"output/{name}", "report_to": "none",
        "validation_prompt": "a red circle on a blue background", "validation_steps": 0,
        "validation_resolution": "64", "validation_num_inference_steps": 2, **config,
    })


def _events(output_dir: Path, kind: str) -> list[dict[str, Any]]:
    from simpletuner.core.events import EVENTS_FILE, read_events

    return [e for e in read_events(output_dir / EVENTS_FILE) if e["event"] == kind]


def _check_run(result: Any) -> None:
    losses = [e["loss"] for e in _events(result.run_dir, "step")]
    assert len(losses) == STEPS
    first, last = sum(losses[:30]) / 30, sum(losses[-30:]) / 30
    assert last < 0.85 * first, (first, last)  # a random σ per step keeps the average noisy
    validations = _events(result.run_dir, "validation")
    assert validations and validations[-1]["images"], _events(result.run_dir, "validation_failed")
    assert all(Path(image).is_file() for image in validations[-1]["images"])


def _render(pipeline: Any) -> torch.Tensor:
    return torch.from_numpy(pipeline("a red circle", height=64, width=64, num_inference_steps=2,
                                     generator=torch.Generator().manual_seed(0), output_type="np").images)


def test_sana_lora_run(workspace: Workspace, sana_folder: Path) -> None:
    from diffusers import SanaPipeline

    result = _train(workspace, "sana-lora", {"model_family": "sana", "model_flavour": "sana1.0-600m-512",
                                             "pretrained_model_name_or_path": str(sana_folder)})
    _check_run(result)
    pipeline = SanaPipeline.from_pretrained(sana_folder)
    before = _render(pipeline)
    pipeline.load_lora_weights(str(result.output.parent), weight_name=result.output.name)
    assert (_render(pipeline) - before).abs().mean() > 1e-4


def test_pixart_lora_run(workspace: Workspace, pixart_folder: Path) -> None:
    from diffusers import PixArtSigmaPipeline

    from simpletuner.model_families.pixart.transformer import load_pixart_lora

    result = _train(workspace, "pixart-lora", {"model_family": "pixart", "model_flavour": "600m-512",
                                               "pretrained_model_name_or_path": str(pixart_folder)})
    _check_run(result)
    pipeline = PixArtSigmaPipeline.from_pretrained(pixart_folder)
    before = _render(pipeline)
    load_pixart_lora(pipeline, result.output)
    assert (_render(pipeline) - before).abs().mean() > 1e-4


LOKR = {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 8,
        "apply_preset": {"target_module": ["Attention"]}}


@pytest.mark.parametrize("family", ["sana", "pixart"])
def test_lycoris_lokr_run(workspace: Workspace, sana_folder: Path, pixart_folder: Path, family: str) -> None:
    from diffusers import PixArtSigmaPipeline, SanaPipeline

    from simpletuner.core.training.lycoris import LYCORIS_CONFIG_FILE, apply_lycoris_weights

    folder = sana_folder if family == "sana" else pixart_folder
    name = f"{family}-lokr"
    (workspace.configs_dir / name).mkdir(parents=True)
    (workspace.configs_dir / name / LYCORIS_CONFIG_FILE).write_text(json.dumps(LOKR))
    result = _train(workspace, name, {"model_family": family, "pretrained_model_name_or_path": str(folder),
                                      "lora_type": "lycoris"})
    _check_run(result)
    assert json.loads((result.run_dir / LYCORIS_CONFIG_FILE).read_text()) == LOKR
    pipeline = (SanaPipeline if family == "sana" else PixArtSigmaPipeline).from_pretrained(folder)
    before = _render(pipeline)
    network = apply_lycoris_weights(pipeline.transformer, str(result.output))
    assert {type(m).__name__ for m in network.loras} == {"LokrModule"}
    assert (_render(pipeline) - before).abs().mean() > 1e-4


def test_pixart_full_rank_run_saves_a_stock_diffusers_transformer(workspace: Workspace, pixart_folder: Path) -> None:
    from diffusers import PixArtTransformer2DModel

    result = _train(workspace, "pixart-full", {
        "model_family": "pixart", "pretrained_model_name_or_path": str(pixart_folder), "model_type": "full",
        "learning_rate": 1e-4, "max_train_steps": 5, "validation_prompt": None,
    })
    assert result.output.name == "transformer" and result.step == 5
    trained = PixArtTransformer2DModel.from_pretrained(result.output)
    base = PixArtTransformer2DModel.from_pretrained(pixart_folder, subfolder="transformer")
    changed = [n for (n, a), (_, b) in zip(trained.state_dict().items(), base.state_dict().items(), strict=True)
               if not torch.equal(a, b)]
    assert changed and any("attn1.to_q" in n for n in changed)
