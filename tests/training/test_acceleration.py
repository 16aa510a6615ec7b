"""The run's Accelerator settings for DeepSpeed ZeRO and FSDP2.

FSDP2 cannot run on this machine: accelerate turns it on only for GPU process groups (with ``cpu=True`` it wraps the
model in DDP and ignores the FSDP plugin, although torch's FSDP2 itself runs on gloo), so the engine refuses it
without CUDA, and these tests check what it would hand to accelerate on a GPU machine: FSDP2's wrap classes resolve
to the tiny Flux transformer's blocks. DeepSpeed runs here through its CPU accelerator (runs in
``test_deepspeed_runs.py``); its plugin parses with DeepSpeed's own parser on both kinds of machine.
"""

from __future__ import annotations

from typing import Any

import pytest

from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.distributed import deepspeed_config
from simpletuner.core.training.acceleration import accelerator_kwargs, is_deepspeed, is_sharded
from simpletuner.core.training.resolve import TrainingSetupError


class FluxLike:
    block_classes = ("FluxTransformerBlock", "FluxSingleTransformerBlock")


class NoBlocks:
    block_classes = ()


@pytest.fixture(autouse=True)
def _fresh_accelerate_state() -> Any:
    from accelerate.state import AcceleratorState, GradientState, PartialState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


def _tiny_transformer() -> Any:
    from diffusers import FluxTransformer2DModel

    from simpletuner.model_families.flux.tiny import TINY_SIZES

    return FluxTransformer2DModel(**TINY_SIZES["transformer"])


def test_fsdp2_without_gpus_is_refused_and_deepspeed_takes_its_cpu_accelerator() -> None:
    with pytest.raises(TrainingSetupError, match="fsdp_enable needs CUDA GPUs"):
        accelerator_kwargs(CoreOptions(model_type="full", fsdp_enable=True), FluxLike(), cuda=False)
    plain = accelerator_kwargs(CoreOptions(mixed_precision="fp16"), FluxLike(), cuda=False)
    assert plain == {"mixed_precision": "bf16", "gradient_accumulation_steps": 1, "cpu": True}
    # accelerate starts DeepSpeed only with cpu=False; fp16 becomes bf16 in DeepSpeed's own config as well
    deepspeed = accelerator_kwargs(CoreOptions(deepspeed_config="zero2", mixed_precision="fp16"), FluxLike(),
                                   cuda=False)
    assert deepspeed["cpu"] is False and deepspeed["mixed_precision"] == "bf16"
    config = deepspeed["deepspeed_plugin"].deepspeed_config
    assert config["bf16"] == {"enabled": True} and config["fp16"] == {"enabled": False}


@pytest.mark.parametrize("preset", ["zero1", "zero2", "zero3-offload"])
def test_deepspeed_plugin_reaches_accelerate_and_parses(preset: str) -> None:
    from accelerate import Accelerator
    from deepspeed.runtime.config import DeepSpeedConfig

    core = CoreOptions(model_type="full", deepspeed_config=preset, train_batch_size=2,
                       gradient_accumulation_steps=3, mixed_precision="bf16")
    kwargs = accelerator_kwargs(core, FluxLike(), cuda=True)
    assert kwargs["cpu"] is False and kwargs["gradient_accumulation_steps"] == 3
    accelerator = Accelerator(**kwargs)
    assert is_deepspeed(accelerator) and is_sharded(accelerator)
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    expected = deepspeed_config(core)
    assert config["zero_optimization"] == expected["zero_optimization"]
    parsed = DeepSpeedConfig({k: v for k, v in config.items() if k != "steps_per_print"}, mpu=None)
    assert parsed.zero_optimization_stage == int(preset[4])
    assert parsed.gradient_accumulation_steps == 3 and parsed.train_micro_batch_size_per_gpu == 2
    assert parsed.bfloat16_config.enabled


def test_fsdp2_wraps_the_family_blocks_or_the_models_own() -> None:
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    core = CoreOptions(model_type="full", fsdp_enable=True, fsdp_reshard_after_forward=True)
    transformer = _tiny_transformer()
    # what accelerate's fsdp2_prepare_model shards as units, before the root
    for family in (FluxLike(), NoBlocks()):
        plugin = accelerator_kwargs(core, family, cuda=True)["fsdp_plugin"]
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        policy = fsdp2_prepare_auto_wrap_policy(plugin, transformer)
        assert policy is not None
        wrapped = {type(m).__name__ for m in transformer.modules() if policy(m)}
        assert wrapped == {"FluxTransformerBlock", "FluxSingleTransformerBlock"}, family
    wrong = CoreOptions(model_type="full", fsdp_enable=True, fsdp_transformer_layer_cls_to_wrap="NoSuchBlock")
    with pytest.raises(ValueError, match="NoSuchBlock"):
        fsdp2_prepare_auto_wrap_policy(accelerator_kwargs(wrong, FluxLike(), cuda=True)["fsdp_plugin"], transformer)
