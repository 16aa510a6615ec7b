"""The Sana family (NVIDIA Efficient-Large-Model Sana 1.0 and 1.5): the entry point of the plugin.

This module only declares the family; :mod:`simpletuner.model_families.sana.family` (torch, diffusers) is imported
by the factory when a run starts.
"""

from __future__ import annotations

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.sana.options import SanaOptions

FLAVOURS = (
    Flavour(name="sana1.5-4.8b-1024", pretrained="Efficient-Large-Model/SANA1.5_4.8B_1024px_diffusers",
            description="Sana 1.5 4.8B at 1024 px: the largest, highest-quality Sana."),
    Flavour(name="sana1.5-1.6b-1024", pretrained="Efficient-Large-Model/SANA1.5_1.6B_1024px_diffusers",
            description="Sana 1.5 1.6B at 1024 px: the 1.5 recipe at the 1.6B size."),
    Flavour(name="sana1.0-1.6b-1024", pretrained="Efficient-Large-Model/Sana_1600M_1024px_diffusers",
            description="Sana 1.0 1.6B at 1024 px."),
    Flavour(name="sana1.0-1.6b-2048", pretrained="Efficient-Large-Model/Sana_1600M_2Kpx_BF16_diffusers",
            description="Sana 1.0 1.6B at 2048 px (bf16 weights).", settings={"sana_weights_variant": "bf16"}),
    Flavour(name="sana1.0-600m-1024", pretrained="Efficient-Large-Model/Sana_600M_1024px_diffusers",
            description="Sana 1.0 600M at 1024 px: small and quick to train."),
    Flavour(name="sana1.0-600m-512", pretrained="Efficient-Large-Model/Sana_600M_512px_diffusers",
            description="Sana 1.0 600M at 512 px: the smallest Sana."),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest: every activation kept (a 1.6B LoRA at 1024 px peaks near 7 GiB).",
                 settings={"gradient_checkpointing": False}),
    MemoryPreset(name="balanced", tradeoff="Recomputes activations in the backward pass: much less memory, about "
                 "30% slower, same quality.", settings={"gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="Smallest footprint (for the 4.8B model on small cards): int8 base "
                 "weights, bf16 optimizer states, batch 1, recomputation; slower, and Sana loses fine detail when "
                 "quantised.",
                 settings={"gradient_checkpointing": True, "base_model_precision": "int8-quanto",
                           "optimizer": "adamw_bf16", "train_batch_size": 1}),
)

_QUANTISATION_COST = ("Sana's linear-attention blocks are sensitive to weight rounding: LoRAs trained on a quantised "
                      "Sana come out softer; its 1.6B and 600M models train in bf16 on 12-24 GiB cards")

DISCOURAGED_PRECISIONS = {
    "int8-quanto": _QUANTISATION_COST,
    "fp8-quanto": _QUANTISATION_COST,
    "int4-quanto": _QUANTISATION_COST + "; at 4 bits the loss is large",
    "int8-torchao": _QUANTISATION_COST,
    "fp8-torchao": _QUANTISATION_COST,
}


SPEC = ModelFamilySpec(
    name="sana",
    title="Sana",
    description="NVIDIA's Sana linear-attention diffusion transformer with the 32× DC-AE autoencoder and a Gemma-2 "
    "text encoder, trained by flow matching.",
    factory=lazy("simpletuner.model_families.sana.family:SanaFamily"),
    options=SanaOptions,
    flavours=FLAVOURS,
    default_flavour="sana1.0-1.6b-1024",
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    precisions=("no_change", "int8-quanto", "fp8-quanto", "int4-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions=DISCOURAGED_PRECISIONS,
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.sana.tiny:build_tiny_sana_pipeline"),
                   settings={"model_flavour": "sana1.0-600m-512"}),
    fp8_training=True,
    flow_sigma_draws=True,
    usage=Usage(pipeline="diffusers:SanaPipeline"),
)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the Sana family."""
    register(SPEC)
