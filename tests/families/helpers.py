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


def train_on_shapes(workspace: Any, name: str, config: Mapping[str, Any]) -> Any:
    """Train the environment ``name`` in this process with ``config`` on one demo image, the text embeddings in the
    workspace's cache; returns the run's result."""
    import json

    from simpletuner.core.cli.demo_commands import make_demo_images
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.training.run import train

    data_dir = workspace.datasets_dir / name
    make_demo_images(data_dir, 1)
    env_dir = workspace.configs_dir / name
    env_dir.mkdir(parents=True, exist_ok=True)
    (env_dir / "config.json").write_text(json.dumps({"output_dir": f"output/{name}", **config}))
    (env_dir / "multidatabackend.json").write_text(json.dumps([
        {"id": "shapes", "instance_data_dir": str(data_dir), "caption_strategy": "textfile",
         "cache_dir_vae": f"cache/{name}/vae"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": f"cache/{name}/text"},
    ]))
    registry = Registry()
    return train(load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry), workspace,
                 registry)


def assert_kohya_reads_back(lora: Path, kohya: Path, layers: int) -> None:
    """diffusers' Flux kohya reader turns ``kohya`` back into the ``layers`` LoRA layers of ``lora``, each the same
    update (the reader folds the scale, 0.5 here, into the weights, as it does for every kohya file)."""
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers
    from safetensors.torch import load_file

    original = {k.removeprefix("transformer."): v for k, v in load_file(str(lora)).items()}
    read_back = {k.removeprefix("transformer."): v
                 for k, v in _convert_kohya_flux_lora_to_diffusers(load_file(str(kohya))).items()}
    assert set(read_back) == set(original) and len(original) == 2 * layers
    for key in (k for k in original if k.endswith(".lora_A.weight")):
        up = key.replace(".lora_A.", ".lora_B.")
        torch.testing.assert_close(read_back[up] @ read_back[key], 0.5 * original[up] @ original[key], msg=key)
