"""Lumina-Image 2.0 for SimpleTuner: the plugin's entry point.

Only declarations live here (no torch, no diffusers), so ``simpletuner plugins list`` and the web UI stay fast;
:mod:`simpletuner_plugin_lumina2.family` is imported (through :func:`~simpletuner.core.specs.lazy`) when a run
starts.
"""

from __future__ import annotations

import attrs

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.options import option
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy

#: Where the ``tiny`` flavour's random-weight pipeline is built on first use (relative to the workspace).
TINY_FOLDER = "./models/lumina2-tiny"


@attrs.define(kw_only=True)
class Lumina2Options:
    """Options of the Lumina 2 family; prefixed with the family name, as every plugin option should be."""

    lumina2_max_tokens: int = option(
        256, help="Gemma-2 tokens per caption (system prompt included); longer captions are cut.", section="model",
        minimum=16, maximum=1024,
    )
    lumina2_system_prompt: str = option(
        "You are an assistant designed to generate superior images with the superior degree of image-text "
        "alignment based on textual prompts or user prompts.",
        help="The instruction put before every caption, as Lumina2Pipeline does.", section="model",
    )


FLAVOURS = (
    Flavour(name="2.0", pretrained="Alpha-VLLM/Lumina-Image-2.0",
            description="Lumina-Image 2.0: a 2.6B flow-matching DiT with a Gemma-2 2B text encoder."),
    Flavour(name="tiny", pretrained=TINY_FOLDER,
            description="A tiny random-weight Lumina 2 built locally on first use: to try the workflow on a CPU."),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest: every activation kept.", settings={"gradient_checkpointing": False}),
    MemoryPreset(name="balanced", tradeoff="Recomputes activations: much less memory, about 30% slower.",
                 settings={"gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="int8 base weights and bf16 optimizer states on top of recomputation.",
                 settings={"gradient_checkpointing": True, "base_model_precision": "int8-quanto",
                           "optimizer": "adamw_bf16"}),
)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the Lumina 2 family."""
    register(ModelFamilySpec(
        name="lumina2", title="Lumina-Image 2.0",
        description="Alpha-VLLM's Lumina-Image 2.0 flow-matching transformer with a Gemma-2 text encoder.",
        factory=lazy("simpletuner_plugin_lumina2.family:Lumina2Family"),
        options=Lumina2Options, flavours=FLAVOURS, default_flavour="2.0",
        model_types=("lora", "full"), lora_types=("standard",),
        precisions=("no_change", "int8-quanto", "fp8-quanto"), memory_presets=MEMORY_PRESETS,
        # `simpletuner demo --family lumina2` and tests build this tiny pipeline, as they do the built-in families'
        tiny=TinyModel(build=lazy("simpletuner_plugin_lumina2.tiny:build_tiny_lumina2_pipeline"),
                       settings={"lumina2_max_tokens": 32}),
        # what model cards show: Lumina2Pipeline loads the LoRA itself (load_lora_weights)
        usage=Usage(pipeline="diffusers:Lumina2Pipeline"),
    ))
