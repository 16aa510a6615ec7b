"""The SD3 family (Stable Diffusion 3.5 medium and large): the entry point of the plugin.

This module only declares the family; :mod:`simpletuner.model_families.sd3.family` (torch, diffusers) is imported by
the factory when a run starts.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.sd3.options import SD3Options

FLAVOURS = (
    Flavour(name="medium", pretrained="stabilityai/stable-diffusion-3.5-medium",
            description="SD 3.5 Medium: a 2.5B MMDiT-X (dual-attention blocks, q/k norms), 0.25-1.4 MP; samples "
                        "with 40 steps at guidance 4.5.",
            settings={"validation_guidance": 4.5, "validation_num_inference_steps": 40}),
    Flavour(name="large", pretrained="stabilityai/stable-diffusion-3.5-large",
            description="SD 3.5 Large: the 8.1B MMDiT at 1 MP; samples with 28 steps at guidance 3.5.",
            settings={"validation_guidance": 3.5, "validation_num_inference_steps": 28}),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest: a rank-16 LoRA at 1024 px needs about 16 GiB for medium and "
                 "about 36 GiB for large.", settings={}),
    MemoryPreset(name="balanced", tradeoff="Recomputed activations: about 10 GiB for medium, 24 GiB for large; "
                 "about 35% slower, same quality.", settings={"gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="int8 base weights and recomputed activations: large fits "
                 "a 16-20 GiB card; slower, with a small loss of detail and of long-prompt following.",
                 settings={"gradient_checkpointing": True, "base_model_precision": "int8-quanto"}),
)

SPEC = ModelFamilySpec(
    name="sd3",
    title="Stable Diffusion 3.5",
    description="Stability AI's Stable Diffusion 3.5: a rectified-flow MMDiT with CLIP-L, CLIP-G and (optional) "
    "T5-XXL text encoders, trained with SD3's noise-level sampling and loss-weighting schemes.",
    factory=lazy("simpletuner.model_families.sd3.family:SD3Family"),
    options=SD3Options,
    flavours=FLAVOURS,
    default_flavour="medium",
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    precisions=("no_change", "int8-quanto", "fp8-quanto", "int4-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions={"int4-quanto": "SD3's MMDiT loses fine detail and text rendering at 4 bits; int8 fits "
                                           "large on a 24 GiB card"},
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.sd3.tiny:build_tiny_sd3_pipeline"),
                   settings={"model_flavour": "medium", "sd3_t5_max_tokens": 16, "validation_guidance": 1.0,
                             "validation_num_inference_steps": 2}),
    fp8_training=True,
    resolution_shift=True,
    usage=Usage(pipeline="diffusers:StableDiffusion3Pipeline"),
)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the SD3 family."""
    register(SPEC)
