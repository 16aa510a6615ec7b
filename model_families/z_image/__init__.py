"""The Z-Image family (Z-Image base and Turbo): the entry point of the plugin.

This module only declares the family; :mod:`simpletuner.model_families.z_image.family` (torch, diffusers) is
imported by the factory when a run starts.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.z_image.options import ZImageOptions

FLAVOURS = (
    Flavour(name="base", pretrained="Tongyi-MAI/Z-Image",
            description="Z-Image: the undistilled 6B base, the one to fine-tune; samples with about 50 steps and "
                        "classifier-free guidance.",
            settings={"validation_guidance": 4.0, "validation_num_inference_steps": 50}),
    Flavour(name="turbo", pretrained="Tongyi-MAI/Z-Image-Turbo",
            description="Z-Image-Turbo: distilled for 8-9 step sampling without guidance; LoRAs trained on it "
                        "slowly undo the distillation, so keep runs short.",
            settings={"validation_guidance": 0.0, "validation_num_inference_steps": 9}),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest: a rank-16 LoRA at 1024 px needs about 24 GiB.", settings={}),
    MemoryPreset(name="balanced", tradeoff="Recomputed activations: about 16 GiB at 1024 px, about 35% slower.",
                 settings={"gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="int8 base weights and recomputation: about 11 GiB at 1024 px (a "
                 "12 GiB card); slower, a small loss of detail.",
                 settings={"gradient_checkpointing": True, "base_model_precision": "int8-quanto"}),
)

SPEC = ModelFamilySpec(
    name="z_image",
    title="Z-Image",
    description="Tongyi-MAI's Z-Image: a 6B single-stream rectified-flow transformer conditioned on a Qwen3 text "
    "encoder, with the Flux VAE.",
    factory=lazy("simpletuner.model_families.z_image.family:ZImageFamily"),
    options=ZImageOptions,
    flavours=FLAVOURS,
    default_flavour="turbo",
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    attention_backends=True,
    fp8_training=True,
    flow_sigma_draws=True,
    resolution_shift=True,
    precisions=("no_change", "int8-quanto", "fp8-quanto", "int4-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions={"int4-quanto": "a 6B single-stream model loses visible detail at 4 bits; int8 already "
                                           "fits a 12 GiB card"},
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.z_image.tiny:build_tiny_z_image_pipeline"),
                   settings={"model_flavour": "turbo", "z_image_max_tokens": 32,
                             "validation_num_inference_steps": 2}),
    usage=Usage(pipeline="diffusers:ZImagePipeline"),
    lora_layouts={"kohya": lazy("simpletuner.model_families.z_image.kohya:to_kohya")},
)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the Z-Image family."""
    register(SPEC)
