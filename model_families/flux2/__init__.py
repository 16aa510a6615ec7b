"""The Flux.2 family (FLUX.2 [dev], FLUX.2 [klein] 4B and 9B): the entry point of the plugin.

This module only declares the family; :mod:`simpletuner.model_families.flux2.family` (torch, diffusers) is imported
by the factory when a run starts.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.flux2.options import Flux2Options

FLAVOURS = (
    Flavour(name="klein-4b", pretrained="black-forest-labs/FLUX.2-klein-4B",
            description="FLUX.2 [klein] 4B: step-distilled for 4-step sampling without guidance, with a Qwen3 4B "
                        "text encoder; fits consumer cards.",
            settings={"validation_guidance": 1.0, "validation_num_inference_steps": 4}),
    Flavour(name="klein-9b", pretrained="black-forest-labs/FLUX.2-klein-9B",
            description="FLUX.2 [klein] 9B: the larger step-distilled [klein] with a Qwen3 8B text encoder; 4-step "
                        "sampling without guidance.",
            settings={"validation_guidance": 1.0, "validation_num_inference_steps": 4}),
    Flavour(name="dev", pretrained="black-forest-labs/FLUX.2-dev",
            description="FLUX.2 [dev]: the 32B guidance-distilled model with a Mistral Small 3.1 (24B) text encoder "
                        "and a guidance input; samples with 50 steps at guidance 4. Caching its text needs about "
                        "48 GiB in bf16 (text_encoder_1_precision int8-quanto halves it).",
            settings={"validation_guidance": 4.0, "validation_num_inference_steps": 50}),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest: a rank-16 LoRA at 1024 px needs about 16 GiB for klein-4b, "
                 "28 GiB for klein-9b and 90 GiB for dev (an H200-class card).", settings={}),
    MemoryPreset(name="balanced", tradeoff="Recomputed activations: about 11 GiB for klein-4b, 20 GiB for "
                 "klein-9b and 72 GiB for dev (an 80 GiB card), about 35% slower.",
                 settings={"gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="int8 base weights and recomputation: klein-9b fits a 16 GiB card, "
                 "dev about 40 GiB (a 48 GiB card; int4-quanto brings it to about 24 GiB); slower, a small loss of "
                 "detail.", settings={"gradient_checkpointing": True, "base_model_precision": "int8-quanto"}),
    MemoryPreset(name="offload", tradeoff="For the smallest GPUs: the frozen weights stay in CPU memory (as much "
                 "RAM as the model's size) and stream to the GPU layer by layer while activations are recomputed; "
                 "the GPU holds the LoRA, a few layers and the activations; the slowest preset.",
                 settings={"gradient_checkpointing": True, "enable_group_offload": True,
                           "group_offload_use_stream": True}),
)

SPEC = ModelFamilySpec(
    name="flux2",
    title="Flux.2",
    description="Black Forest Labs' FLUX.2: rectified-flow transformers over the 32-channel Flux.2 VAE, conditioned "
    "on stacked hidden layers of a Qwen3 ([klein]) or Mistral Small 3.1 ([dev], with a guidance input) text encoder.",
    factory=lazy("simpletuner.model_families.flux2.family:Flux2Family"),
    options=Flux2Options,
    flavours=FLAVOURS,
    default_flavour="klein-9b",
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    attention_backends=True,
    fp8_training=True,
    flow_sigma_draws=True,
    resolution_shift=True,
    precisions=("no_change", "int8-quanto", "fp8-quanto", "int4-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions={"int4-quanto": "the step-distilled [klein] models lose detail quickly at 4 bits; use it "
                                           "only to fit [dev] on a 24-32 GiB card"},
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.flux2.tiny:build_tiny_flux2_klein_pipeline"),
                   settings={"model_flavour": "klein-4b", "flux2_max_tokens": 32,
                             "validation_num_inference_steps": 2}),
    # DiffusionPipeline picks Flux2Pipeline ([dev]) or Flux2KleinPipeline ([klein]) from the base model's index
    usage=Usage(pipeline="diffusers:DiffusionPipeline"),
    lora_layouts={"kohya": lazy("simpletuner.model_families.flux2.kohya:to_kohya")},
)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the Flux.2 family."""
    register(SPEC)
