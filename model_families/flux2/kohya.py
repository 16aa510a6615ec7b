"""Flux.2 LoRAs in kohya's layout: the ``lora_unet_…`` keys of Black Forest Labs' module names, which ComfyUI and
kohya's trainers write (and diffusers reads back with ``_convert_kohya_flux2_lora_to_diffusers``).

BFL's double block fuses ``img_attn_qkv`` (diffusers' ``to_q``, ``to_k``, ``to_v``) and ``txt_attn_qkv``
(``add_q_proj``, ``add_k_proj``, ``add_v_proj``), which become one LoRA each (see
:mod:`simpletuner.model_families.kohya_layout`); diffusers already keeps a single block's ``linear1`` fused
(``attn.to_qkv_mlp_proj``), so it maps one to one like every other layer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from simpletuner.model_families.kohya_layout import write_layout

_DOUBLE = {
    "attn.to_out.0": "img_attn_proj", "attn.to_add_out": "txt_attn_proj", "ff.linear_in": "img_mlp_0",
    "ff.linear_out": "img_mlp_2", "ff_context.linear_in": "txt_mlp_0", "ff_context.linear_out": "txt_mlp_2",
}
_DOUBLE_FUSED = {"img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                 "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
_SINGLE = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2"}
# the outer layers diffusers' reader maps back (it has no place for the modulation layers)
_TOP = {
    "x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer_linear",
    "time_guidance_embed.timestep_embedder.linear_1": "time_in_in_layer",
    "time_guidance_embed.timestep_embedder.linear_2": "time_in_out_layer",
}
_BLOCK = re.compile(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)")


def to_kohya(state: Mapping[str, torch.Tensor], scale: float, transformer: Any) -> dict[str, torch.Tensor]:
    """The Flux.2 transformer LoRA ``state`` (peft keys: ``<module>.lora_A.weight`` / ``.lora_B.weight``) in
    kohya's layout: ``lora_unet_<name>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``, the ``scale``
    (alpha / rank) folded into ``lora_up`` and every ``alpha`` equal to its layer's rank."""
    return write_layout(state, scale, transformer, _kohya_name)


def _kohya_name(module: str) -> tuple[str, tuple[str, tuple[str, ...]] | None]:
    """The kohya name of a diffusers module, and for a fused layer its module prefix and parts."""
    match = _BLOCK.fullmatch(module)
    if match:
        kind, index, rest = match.groups()
        if kind == "single_transformer_blocks":
            if rest in _SINGLE:
                return f"single_blocks_{index}_{_SINGLE[rest]}", None
        elif rest in _DOUBLE:
            return f"double_blocks_{index}_{_DOUBLE[rest]}", None
        else:
            for fused_name, parts in _DOUBLE_FUSED.items():
                if rest in parts:
                    return f"double_blocks_{index}_{fused_name}", (f"{kind}.{index}.", parts)
    elif module in _TOP:
        return _TOP[module], None
    raise ValueError(f"the layer {module!r} has no place in kohya's Flux.2 layout")
