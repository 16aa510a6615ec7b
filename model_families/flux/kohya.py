"""Flux LoRAs in kohya's layout: the ``lora_unet_…`` keys of Black Forest Labs' module names, which ComfyUI, Forge
and kohya's sd-scripts load (and diffusers reads back with ``_convert_kohya_flux_lora_to_diffusers``).

BFL's transformer fuses layers diffusers keeps apart: a double block's ``img_attn_qkv`` is diffusers' ``to_q``,
``to_k`` and ``to_v``, a single block's ``linear1`` is ``to_q``, ``to_k``, ``to_v`` and ``proj_mlp``. Their LoRAs
become one LoRA on the fused layer (see :mod:`simpletuner.model_families.kohya_layout`).

Chroma declares this writer too: its transformer has Flux's blocks and outer layers without the modulation ones, and
ChromaPipeline reads ``lora_unet_…`` files with the same diffusers converter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from simpletuner.model_families.kohya_layout import write_layout

_DOUBLE = {
    "attn.to_out.0": "img_attn_proj", "ff.net.0.proj": "img_mlp_0", "ff.net.2": "img_mlp_2",
    "norm1.linear": "img_mod_lin", "attn.to_add_out": "txt_attn_proj", "ff_context.net.0.proj": "txt_mlp_0",
    "ff_context.net.2": "txt_mlp_2", "norm1_context.linear": "txt_mod_lin",
}
_DOUBLE_FUSED = {"img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                 "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
_SINGLE = {"proj_out": "linear2", "norm.linear": "modulation_lin"}
_SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}
_TOP = {
    "x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer_linear",
    "norm_out.linear": "final_layer_adaLN_modulation_1",
    "time_text_embed.timestep_embedder.linear_1": "time_in_in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in_out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in_in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in_out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in_in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in_out_layer",
}
_BLOCK = re.compile(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)")


def to_kohya(state: Mapping[str, torch.Tensor], scale: float, transformer: Any) -> dict[str, torch.Tensor]:
    """The Flux transformer LoRA ``state`` (peft keys: ``<module>.lora_A.weight`` / ``.lora_B.weight``) in
    kohya's layout: ``lora_unet_<name>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``.

    The LoRA ``scale`` (alpha / rank) is folded into ``lora_up`` and every ``alpha`` equals its layer's rank, so
    each reader applies the same update whatever it does with alpha (diffusers ignores the final layer's)."""
    return write_layout(state, scale, transformer, _kohya_name, _bfl_order)


def _bfl_order(name: str, up: torch.Tensor) -> torch.Tensor:
    if name != "final_layer_adaLN_modulation_1":
        return up
    # BFL orders the final modulation (shift, scale); diffusers (scale, shift)
    scale_part, shift_part = up.chunk(2, dim=0)
    return torch.cat([shift_part, scale_part], dim=0)


def _kohya_name(module: str) -> tuple[str, tuple[str, tuple[str, ...]] | None]:
    """The kohya name of a diffusers module, and for a fused layer its module prefix and parts."""
    match = _BLOCK.fullmatch(module)
    if match:
        kind, index, rest = match.groups()
        single = kind == "single_transformer_blocks"
        plain, fused_table = (_SINGLE, _SINGLE_FUSED) if single else (_DOUBLE, _DOUBLE_FUSED)
        stem = f"{'single' if single else 'double'}_blocks_{index}_"
        if rest in plain:
            return stem + plain[rest], None
        for fused_name, parts in fused_table.items():
            if rest in parts:
                return stem + fused_name, (f"{kind}.{index}.", parts)
    elif module in _TOP:
        return _TOP[module], None
    raise ValueError(f"the layer {module!r} has no place in kohya's Flux layout")
