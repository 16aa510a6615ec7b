"""The Qwen-Image family (Qwen-Image v1.0 and v2.0, text-to-image): the entry point of the plugin.

This module only declares the family; :mod:`simpletuner.model_families.qwen_image.family` (torch, diffusers) is
imported by the factory when a run starts.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.qwen_image.options import QwenImageOptions

FLAVOURS = (
    Flavour(name="v1.0", pretrained="Qwen/Qwen-Image",
            description="Qwen-Image (August 2025): the 20B MMDiT, strong at rendering text in images; samples with "
                        "50 steps at true-CFG 4.",
            settings={"validation_guidance": 4.0, "validation_num_inference_steps": 50}),
    Flavour(name="v2.0", pretrained="Qwen/Qwen-Image-2512",
            description="Qwen-Image 2512 (December 2025): the text-to-image update with more realistic people and "
                        "finer natural detail; same architecture and sampling.",
            settings={"validation_guidance": 4.0, "validation_num_inference_steps": 50}),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="int8 base weights: a rank-16 LoRA at 1024 px needs about 40 GiB (a 48 GiB "
                 "card); bf16 weights alone are 41 GiB.", settings={"base_model_precision": "int8-quanto"}),
    MemoryPreset(name="balanced", tradeoff="int8 base weights and recomputed activations: about 28 GiB at 1024 px "
                 "(a 32 GiB card), about 35% slower.",
                 settings={"base_model_precision": "int8-quanto", "gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="int4 base weights and recomputation: about 18 GiB at 1024 px (a 24 "
                 "GiB card); slower, with a visible loss of fine detail.",
                 settings={"base_model_precision": "int4-quanto", "gradient_checkpointing": True}),
    MemoryPreset(name="offload", tradeoff="For the smallest GPUs: the frozen weights stay in CPU memory (as much "
                 "RAM as the model's size) and stream to the GPU layer by layer while activations are recomputed; "
                 "the GPU holds the LoRA, a few layers and the activations; the slowest preset.",
                 settings={"gradient_checkpointing": True, "enable_group_offload": True,
                           "group_offload_use_stream": True}),
)

SPEC = ModelFamilySpec(
    name="qwen_image",
    title="Qwen-Image",
    description="Alibaba Qwen's Qwen-Image: a 20B rectified-flow MMDiT conditioned on a Qwen2.5-VL 7B text encoder, "
    "with its own VAE and latent normalisation.",
    factory=lazy("simpletuner.model_families.qwen_image.family:QwenImageFamily"),
    options=QwenImageOptions,
    flavours=FLAVOURS,
    default_flavour="v1.0",
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    attention_backends=True,
    fp8_training=True,
    flow_sigma_draws=True,
    resolution_shift=True,
    precisions=("no_change", "int8-quanto", "fp8-quanto", "int4-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions={"int4-quanto": "Qwen-Image's fine text rendering suffers at 4 bits; use it only when "
                                           "int8 does not fit"},
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.qwen_image.tiny:build_tiny_qwen_image_pipeline"),
                   settings={"model_flavour": "v1.0", "qwen_image_max_tokens": 128, "validation_guidance": 1.0,
                             "validation_num_inference_steps": 2}),
    usage=Usage(pipeline="diffusers:QwenImagePipeline"),
    lora_layouts={"kohya": lazy("simpletuner.model_families.qwen_image.kohya:to_kohya")},
)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the Qwen-Image family."""
    register(SPEC)
