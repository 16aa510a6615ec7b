"""Helpers shared by the family tests."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from simpletuner.core.plugins import Registry


def make_family(registry: Registry, name: str, **options: Any) -> Any:
    """The family ``name`` built by its spec's factory, with its options class overridden by ``options``."""
    spec = registry.model_family(name)
    return spec.build(spec.flavour(None), spec.options(**options))


def without(folder: Path, component: str, target: Path) -> Path:
    """A copy of a pipeline folder without one component's sub-folder."""
    shutil.copytree(folder, target)
    shutil.rmtree(target / component)
    return target


def stack(embeddings: list[dict[str, Any]]) -> dict[str, Any]:
    """Cached per-prompt embeddings stacked into a batch, as the data loader hands them to the family."""
    return {key: torch.stack([e[key] for e in embeddings]) for key in embeddings[0]}


def lora_overfit(family: Any, transformer: Any, latents: Any, text: Mapping[str, Any], steps: int,
                 lr: float = 3e-3) -> list[float]:
    """Attach a PEFT LoRA (the family's default targets) and take ``steps`` AdamW steps on one fixed batch through
    the family's own ``training_inputs``/``predict``/``loss``; the same noise each step, so the loss must fall."""
    from peft import LoraConfig

    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(family.lora_targets())))
    params = [p for p in transformer.parameters() if p.requires_grad]
    assert params, "the LoRA added no trainable parameters"
    optimizer = torch.optim.AdamW(params, lr=lr)
    transformer.train()
    losses = []
    for _ in range(steps):
        inputs = family.training_inputs(latents, text, torch.Generator().manual_seed(7))
        loss = family.loss(family.predict({family.trained_component: transformer}, inputs, text), inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    transformer.eval()
    return losses


def image_batch(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [-1, 1] (a blurred noise field, so the autoencoders see some structure)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 8, width // 8, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)



def with_random_lora(model: Any, targets: Any, rank: int, alpha: float) -> None:
    """Attach a LoRA the way training does and give it random weights (training starts lora_B at zero)."""
    from peft import LoraConfig

    from simpletuner.core.training.adapter import ADAPTER_NAME

    model.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True),
                      adapter_name=ADAPTER_NAME)
    generator = torch.Generator().manual_seed(3)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.2
