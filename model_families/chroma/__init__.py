"""The Chroma family (Chroma1 base, HD, Flash): the entry point of the plugin.

This module only declares the family; :mod:`simpletuner.model_families.chroma.family` (torch, diffusers) is imported
by the factory when a run starts.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.chroma.options import ChromaOptions

FLAVOURS = (
    Flavour(name="base", pretrained="lodestones/Chroma1-Base",
            description="Chroma1 Base: the pretrained 8.9B model at 512-1024 px, the base for fine-tunes and LoRAs.",
            settings={"validation_guidance": 4.0, "validation_num_inference_steps": 26}),
    Flavour(name="hd", pretrained="lodestones/Chroma1-HD",
            description="Chroma1 HD: Base trained further at high resolution for detail; samples with 40 steps at "
                        "guidance 3.",
            settings={"validation_guidance": 3.0, "validation_num_inference_steps": 40}),
    Flavour(name="flash", pretrained="lodestones/Chroma1-Flash",
            description="Chroma1 Flash: distilled for few-step sampling without classifier-free guidance (about "
                        "8 steps, guidance 1).",
            settings={"validation_guidance": 1.0, "validation_num_inference_steps": 8}),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest; a rank-16 LoRA at 1024 px needs about 28 GiB (a 32-48 GiB card).",
                 settings={}),
    MemoryPreset(name="balanced", tradeoff="int8 base weights: about 16 GiB at 1024 px (a 24 GiB card), slightly "
                 "slower, a small loss of detail.", settings={"base_model_precision": "int8-quanto"}),
    MemoryPreset(name="aggressive", tradeoff="int8 base weights and recomputed activations: about 12 GiB at "
                 "1024 px (a 16 GiB card), about 45% slower.",
                 settings={"base_model_precision": "int8-quanto", "gradient_checkpointing": True}),
)

SPEC = ModelFamilySpec(
    name="chroma",
    title="Chroma",
    description="Lodestone's Chroma1: an 8.9B rectified-flow transformer derived from FLUX.1-schnell, with a T5-XXL "
    "text encoder whose padding is masked out of attention and no guidance input.",
    factory=lazy("simpletuner.model_families.chroma.family:ChromaFamily"),
    options=ChromaOptions,
    flavours=FLAVOURS,
    default_flavour="base",  # SimpleTuner's default flavour
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    attention_backends=True,
    fp8_training=True,
    flow_sigma_draws=True,
    resolution_shift=True,
    precisions=("no_change", "int8-quanto", "int4-quanto", "fp8-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions={"int4-quanto": "noticeably softer detail than int8 for Chroma's trimmed blocks"},
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.chroma.tiny:build_tiny_chroma_pipeline"),
                   settings={"model_flavour": "hd", "chroma_t5_max_tokens": 32,
                             "validation_num_inference_steps": 2}),
    usage=Usage(pipeline="diffusers:ChromaPipeline"),
    # Flux's blocks and names without its modulation layers, read back by the same diffusers converter
    lora_layouts={"kohya": lazy("simpletuner.model_families.flux.kohya:to_kohya")},
)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the Chroma family."""
    register(SPEC)
