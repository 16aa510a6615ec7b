"""The PixArt family (PixArt-Sigma 600M and the 900M fine-tunes): the entry point of the plugin.

This module only declares the family, and :func:`load_lora`, the LoRA loader its model cards show;
:mod:`simpletuner.model_families.pixart.family` (torch, diffusers) is imported by the factory when a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.inference import LORA_FILE, weights_file
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.pixart.options import PixArtOptions

FLAVOURS = (
    Flavour(name="600m-1024", pretrained="PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
            description="PixArt-Sigma XL 600M at 1024 px (multi-scale)."),
    Flavour(name="600m-512", pretrained="PixArt-alpha/PixArt-Sigma-XL-2-512-MS",
            description="PixArt-Sigma XL 600M at 512 px (multi-scale)."),
    Flavour(name="600m-2048", pretrained="PixArt-alpha/PixArt-Sigma-XL-2-2K-MS",
            description="PixArt-Sigma XL 600M at 2048 px (multi-scale)."),
    Flavour(name="900m-1024-v0.6", pretrained="terminusresearch/pixart-900m-1024-ft-v0.6",
            description="PixArt-Sigma 900M at 1024 px: the deeper 900M model, fine-tuned (v0.6)."),
    Flavour(name="900m-1024-v0.7-stage1", pretrained="terminusresearch/pixart-900m-1024-ft-v0.7-stage1",
            description="PixArt-Sigma 900M v0.7, stage 1: the high-noise (composition) expert; trained here over "
                        "every timestep."),
    Flavour(name="900m-1024-v0.7-stage2", pretrained="terminusresearch/pixart-900m-1024-ft-v0.7-stage2",
            description="PixArt-Sigma 900M v0.7, stage 2: the low-noise (detail) expert; trained here over every "
                        "timestep."),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest: every activation kept (a 600M LoRA at 1024 px peaks near 7 GiB).",
                 settings={"gradient_checkpointing": False}),
    MemoryPreset(name="balanced", tradeoff="Recomputes activations in the backward pass: much less memory, about "
                 "30% slower, same quality.", settings={"gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="Smallest footprint: int8 base weights, bf16 optimizer states, batch "
                 "1, recomputation; slower, and PixArt loses fine detail when quantised.",
                 settings={"gradient_checkpointing": True, "base_model_precision": "int8-quanto",
                           "optimizer": "adamw_bf16", "train_batch_size": 1}),
)

_QUANTISATION_COST = ("PixArt-Sigma is small (0.6-0.9B) and its adaLN-single modulation is sensitive to weight "
                      "rounding: quantising saves little memory and costs visible detail")

DISCOURAGED_PRECISIONS = {
    "int8-quanto": _QUANTISATION_COST,
    "fp8-quanto": _QUANTISATION_COST,
    "int4-quanto": _QUANTISATION_COST + "; at 4 bits the loss is large",
    "int8-torchao": _QUANTISATION_COST,
    "fp8-torchao": _QUANTISATION_COST,
}


SPEC = ModelFamilySpec(
    name="pixart",
    aliases=("pixart_sigma",),  # SimpleTuner's name of the family
    title="PixArt-Sigma",
    description="PixArt-Sigma diffusion transformer (600M and 900M) with the SDXL VAE and a T5-XXL text encoder, "
    "trained by DDPM epsilon prediction.",
    factory=lazy("simpletuner.model_families.pixart.family:PixArtFamily"),
    options=PixArtOptions,
    flavours=FLAVOURS,
    default_flavour="600m-1024",
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    precisions=("no_change", "int8-quanto", "fp8-quanto", "int4-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions=DISCOURAGED_PRECISIONS,
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.pixart.tiny:build_tiny_pixart_pipeline"),
                   settings={"model_flavour": "600m-512", "pixart_max_tokens": 32}),
    # PixArtSigmaPipeline has no load_lora_weights
    fp8_training=True,
    usage=Usage(pipeline="diffusers:PixArtSigmaPipeline", lora="simpletuner.model_families.pixart:load_lora"),
)


def load_lora(pipeline: Any, source: str | Path, *, weight_name: str = LORA_FILE, adapter_name: str = "default",
              scale: float = 1.0) -> Any:
    """Load a PixArt LoRA trained by SimpleTuner into a stock ``PixArtSigmaPipeline`` and activate it at ``scale``;
    returns the pipeline. ``source`` is a Hub repository id, a folder holding ``weight_name``, or the file.

    The pipeline's transformer is swapped for a copy that carries diffusers' adapter methods (same weights, dtype
    and device); ``pipeline.transformer.set_adapters([adapter_name], weights=[s])`` changes the strength later.
    Example::

        from diffusers import PixArtSigmaPipeline
        from simpletuner.model_families.pixart import load_lora

        pipeline = PixArtSigmaPipeline.from_pretrained("PixArt-alpha/PixArt-Sigma-XL-2-1024-MS")
        load_lora(pipeline, "your-name/your-pixart-lora")
    """
    from simpletuner.model_families.pixart.transformer import load_pixart_lora

    return load_pixart_lora(pipeline, weights_file(source, weight_name), adapter_name, scale)


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the PixArt family."""
    register(SPEC)
