"""The Flux family (FLUX.1 dev, schnell, Krea-dev): the entry point of the plugin.

This module only declares the family; :mod:`simpletuner.model_families.flux.family` (torch, diffusers) is imported
by the factory when a run starts.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.flux.options import FluxOptions

FLAVOURS = (
    Flavour(name="dev", pretrained="black-forest-labs/FLUX.1-dev",
            description="FLUX.1 [dev]: guidance-distilled, the usual base for LoRAs."),
    Flavour(name="schnell", pretrained="black-forest-labs/FLUX.1-schnell",
            description="FLUX.1 [schnell]: timestep-distilled for 1-4 step sampling; no guidance input.",
            settings={"flux_t5_max_tokens": 256}),
    Flavour(name="krea", pretrained="black-forest-labs/FLUX.1-Krea-dev",
            description="FLUX.1 Krea [dev]: dev fine-tuned by Krea for photographic aesthetics."),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest; needs about 48 GiB for a 1024 px LoRA.", settings={}),
    MemoryPreset(name="balanced", tradeoff="About half the memory of light, about 45% slower.",
                 settings={"gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="Fits 24 GiB cards: int8 base weights and recomputed activations; "
                 "slower, small quality cost.",
                 settings={"gradient_checkpointing": True, "base_model_precision": "int8-quanto"}),
    MemoryPreset(name="offload", tradeoff="For the smallest GPUs: the frozen weights stay in CPU memory (as much "
                 "RAM as the model's size) and stream to the GPU layer by layer while activations are recomputed; "
                 "the GPU holds the LoRA, a few layers and the activations; the slowest preset.",
                 settings={"gradient_checkpointing": True, "enable_group_offload": True,
                           "group_offload_use_stream": True}),
)


SPEC = ModelFamilySpec(
    name="flux",
    title="Flux",
    description="Black Forest Labs' FLUX.1 rectified-flow transformer with CLIP-L and T5-XXL text encoders.",
    factory=lazy("simpletuner.model_families.flux.family:FluxFamily"),
    options=FluxOptions,
    flavours=FLAVOURS,
    default_flavour="dev",
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    attention_backends=True,
    fp8_training=True,
    flow_sigma_draws=True,
    resolution_shift=True,
    precisions=("no_change", "int8-quanto", "int4-quanto", "fp8-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions={"int4-quanto": "noticeably lower quality LoRAs than int8 for Flux"},
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.flux.tiny:build_tiny_flux_pipeline"),
                   settings={"model_flavour": "dev", "flux_t5_max_tokens": 32}),
    usage=Usage(pipeline="diffusers:FluxPipeline"),
    lora_layouts={"kohya": lazy("simpletuner.model_families.flux.kohya:to_kohya")},
)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the Flux family."""
    register(SPEC)
