"""Every built-in family declares float8 training (``fp8_training``): a short LoRA run of its tiny model through
torchao's float8 emulation converts its linear layers, leaves its quantization exclusions (embedders, norms, output
projections) in bf16 and trains to finite losses; a family that does not declare it is refused by config check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from simpletuner.core.training import fp8
from simpletuner.core.workspace import Workspace

from .helpers import train_on_shapes

pytestmark = pytest.mark.timeout(300)

#: The families besides Flux, whose float8 runs tests/training/test_fp8_training.py covers in depth.
FAMILIES = ["sana", "pixart", "sdxl", "sd3", "chroma", "flux2", "z-image", "qwen-image"]


#: A short float8 LoRA run on one image.
FP8_RUN = {"lora_rank": 4, "lora_dropout": 0.0, "learning_rate": 1e-3, "max_train_steps": 3, "num_train_epochs": 0,
           "train_batch_size": 1, "seed": 7, "resolution": 64, "resolution_type": "pixel", "mixed_precision": "bf16",
           "fp8_training": True, "checkpointing_steps": 0, "report_to": "none"}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_with_float8_layers(workspace: Workspace, tiny_folder: Callable[[str], Path],
                                               monkeypatch: pytest.MonkeyPatch, family: str) -> None:
    import torch
    from torchao.float8.float8_linear import Float8Linear

    from simpletuner.core.events import EVENTS_FILE, read_events
    from simpletuner.core.interfaces.quantizer import excluded
    from simpletuner.core.training import stages

    monkeypatch.setattr(fp8, "_emulate", True)
    converted: list[tuple[str, bool]] = []
    original = stages.convert_to_fp8

    def spy(model: Any, device: Any, exclude: Any = ()) -> int:
        count = original(model, device, exclude=exclude)
        converted.extend((name, excluded(name, exclude)) for name, module in model.named_modules()
                         if isinstance(module, Float8Linear))
        return count

    monkeypatch.setattr(stages, "convert_to_fp8", spy)
    name = f"fp8-{family}"
    result = train_on_shapes(workspace, name, {**FP8_RUN, "model_family": family,
                                               "pretrained_model_name_or_path": str(tiny_folder(family))})
    assert converted and not [layer for layer, kept in converted if kept]  # exclusions stay in bf16
    losses = [e["loss"] for e in read_events(result.run_dir / EVENTS_FILE) if e["event"] == "step"]
    assert len(losses) == 3 and all(map(torch.isfinite, torch.tensor(losses))), losses
    assert result.output.is_file()


def test_a_family_that_does_not_declare_float8_training_is_refused() -> None:
    from simpletuner.core.config import Layer, build_schema
    from simpletuner.core.config.checks import check_config
    from simpletuner.core.hookspecs import hookimpl
    from simpletuner.core.plugins import Registry

    registry = Registry()
    # Flux's spec under another name, without its options (two families cannot declare the same ones)
    plain = attrs.evolve(registry.model_family("flux"), name="plainflux", aliases=(), options=None, fp8_training=False)

    class PlainPlugin:
        @hookimpl
        def register_model_families(self, register: Callable[[Any], None]) -> None:
            register(plain)

    registry.register_plugin(PlainPlugin(), "plainflux")
    layers = [Layer("env:t", {"model_family": "plainflux", "fp8_training": True, "mixed_precision": "bf16"})]
    config, _ = build_schema(registry).load(layers, own_source="env:t")
    problems, _ = check_config(config, registry)
    assert "$.fp8_training: plainflux does not declare float8 training of its layers; turn fp8_training off" \
        in problems
    flux_config, _ = build_schema(registry).load([Layer("env:t", {"model_family": "flux", "fp8_training": True,
                                                                  "mixed_precision": "bf16"})], own_source="env:t")
    assert not any(p.startswith("$.fp8_training") for p in check_config(flux_config, registry)[0])
