"""The SDXL family (Stable Diffusion XL 1.0): the entry point of the plugin.

This module only declares the family, and :func:`load_lycoris`, the LyCORIS loader its model cards show (diffusers
reads no LyCORIS file); :mod:`simpletuner.model_families.sdxl.family` (torch, diffusers) is imported by the factory
when a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.inference import LORA_FILE
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec, TinyModel, Usage, lazy
from simpletuner.model_families.sdxl.options import SDXLOptions

FLAVOURS = (
    Flavour(name="base-1.0", pretrained="stabilityai/stable-diffusion-xl-base-1.0",
            description="SDXL 1.0 base (2.6B UNet, two CLIP text encoders) at 1024 px: epsilon prediction on the "
                        "scaled-linear DDPM schedule.",
            settings={"prediction_type": "epsilon"}),
    Flavour(name="base-0.9", pretrained="stabilityai/stable-diffusion-xl-base-0.9",
            description="SDXL 0.9 base, the research preview (gated on the Hub; same architecture and schedule as "
                        "1.0).",
            settings={"prediction_type": "epsilon"}),
)

MEMORY_PRESETS = (
    MemoryPreset(name="light", tradeoff="Fastest: every activation kept (a rank-16 LoRA at 1024 px, batch 1, peaks "
                 "near 16 GiB in bf16; a 24 GiB card).", settings={"gradient_checkpointing": False}),
    MemoryPreset(name="balanced", tradeoff="Recomputes activations in the backward pass: about 10 GiB at 1024 px "
                 "(a 12-16 GiB card), about 30% slower, same quality.", settings={"gradient_checkpointing": True}),
    MemoryPreset(name="aggressive", tradeoff="Smallest footprint (8-10 GiB cards): int8 base weights, bf16 "
                 "optimizer states, batch 1, recomputation; slower, with a small loss of detail.",
                 settings={"gradient_checkpointing": True, "base_model_precision": "int8-quanto",
                           "optimizer": "adamw_bf16", "train_batch_size": 1}),
)

#: Levels that train but are not the best choice, and why; int2-quanto (too coarse for the UNet's convolutions and
#: attention) and fp8uz-quanto (AMD Instinct's float8 format) are not offered.
DISCOURAGED_PRECISIONS = {
    "int4-quanto": "at 4 bits SDXL's UNet loses visible detail; int8-quanto already fits an 8-10 GiB card",
    "fp8-quanto": "SimpleTuner refuses fp8-quanto for SDXL; it trains here, but int8-quanto saves the same memory "
                  "and is the 8-bit level SDXL LoRAs are usually trained at",
}


SPEC = ModelFamilySpec(
    name="sdxl",
    title="Stable Diffusion XL",
    description="Stable Diffusion XL: a 2.6B UNet with two CLIP text encoders (pooled and penultimate-layer "
    "conditioning), size/crop micro-conditioning and the SDXL VAE, trained by DDPM epsilon or v-prediction with "
    "optional Min-SNR weighting.",
    factory=lazy("simpletuner.model_families.sdxl.family:SDXLFamily"),
    options=SDXLOptions,
    flavours=FLAVOURS,
    default_flavour="base-1.0",
    model_types=("lora", "full"),
    lora_types=("standard", "lycoris"),
    precisions=("no_change", "int8-quanto", "fp8-quanto", "int4-quanto", "int8-torchao", "fp8-torchao"),
    discouraged_precisions=DISCOURAGED_PRECISIONS,
    memory_presets=MEMORY_PRESETS,
    tiny=TinyModel(build=lazy("simpletuner.model_families.sdxl.tiny:build_tiny_sdxl_pipeline"),
                   settings={"model_flavour": "base-1.0"}),
    fp8_training=True,
    usage=Usage(pipeline="diffusers:StableDiffusionXLPipeline", lycoris="simpletuner.model_families.sdxl:load_lycoris",
                full="diffusers:UNet2DConditionModel"),
    lora_layouts={"kohya": lazy("simpletuner.model_families.sdxl.kohya:to_kohya")},
)


def load_lycoris(pipeline: Any, source: str | Path, *, weight_name: str = LORA_FILE, multiplier: float = 1.0) -> Any:
    """Load an SDXL LyCORIS file trained by SimpleTuner onto a stock ``StableDiffusionXLPipeline``'s UNet at
    ``multiplier`` and return the LyCORIS network (``network.set_multiplier(m)`` changes its strength).
    ``source`` is a Hub repository id, a folder holding ``weight_name``, or the file. Example::

        from diffusers import StableDiffusionXLPipeline
        from simpletuner.model_families.sdxl import load_lycoris

        pipeline = StableDiffusionXLPipeline.from_pretrained("stabilityai/stable-diffusion-xl-base-1.0")
        network = load_lycoris(pipeline, "your-name/your-sdxl-lokr")
    """
    from simpletuner.core.inference import load_lycoris as load

    return load(pipeline, source, weight_name=weight_name, multiplier=multiplier, component="unet")


@hookimpl
def register_model_families(register: RegisterModelFamily) -> None:
    """Register the SDXL family."""
    register(SPEC)
