"""Qwen-Image LoRAs in kohya's layout: ``lora_unet_`` and the module's own name with underscores for dots (e.g.
``lora_unet_transformer_blocks_0_attn_to_q``), as kohya's musubi-tuner writes them and ComfyUI loads them (its
Qwen-Image model keeps diffusers' module names); diffusers reads them back with
``_convert_non_diffusers_qwen_lora_to_diffusers``.

Nothing is fused, so each layer maps one to one. The underscored names are ambiguous; diffusers' reader restores
the dots of the transformer blocks' layers only, so only those are written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from simpletuner.model_families.kohya_layout import Placement, write_layout

#: The block layers diffusers' reader turns back into their module names.
_BLOCK_LAYER = re.compile(
    r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|(img|txt)_mlp\.net\.(0\.proj|2)|(img|txt)_mod\.1)"
)


def to_kohya(state: Mapping[str, torch.Tensor], scale: float, transformer: Any) -> dict[str, torch.Tensor]:
    """The Qwen-Image transformer LoRA ``state`` (peft keys: ``<module>.lora_A.weight`` / ``.lora_B.weight``) in
    kohya's layout: ``lora_unet_<name>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``, the ``scale``
    (alpha / rank) folded into ``lora_up`` and every ``alpha`` equal to its layer's rank."""
    return write_layout(state, scale, transformer, _place)


def _place(module: str) -> Placement:
    if not _BLOCK_LAYER.fullmatch(module):
        raise ValueError(f"the layer {module!r} has no place in kohya's Qwen-Image layout")
    return module.replace(".", "_"), None
