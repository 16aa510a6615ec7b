"""SDXL LoRAs in kohya's layout: ``lora_unet_`` and the UNet's module names in Stability's original (SGM) layout
with underscores for dots, e.g. ``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``, as kohya's
sd-scripts writes them and ComfyUI, Forge and A1111 load them; diffusers reads them back with
``_maybe_map_sgm_blocks_to_diffusers`` and ``_convert_non_diffusers_lora_to_diffusers``.

SGM numbers the UNet's blocks flat: ``input_blocks.0`` is ``conv_in``, then each down block's layers (and its
downsampler) one after another, a layer's ResNet at ``.0`` and its transformer at ``.1``; ``middle_block`` holds
ResNet, transformer, ResNet; ``output_blocks`` the up blocks' layers. Inside a transformer the names are diffusers'
own; a ResNet's ``conv1``, ``conv2``, ``conv_shortcut`` and ``time_emb_proj`` are ``in_layers.2``, ``out_layers.3``,
``skip_connection`` and ``emb_layers.1``. Only the UNet is trained here, so no ``lora_te`` keys are written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from simpletuner.model_families.kohya_layout import write_layout

_RESNET = {"conv1": "in_layers.2", "conv2": "out_layers.3", "conv_shortcut": "skip_connection",
           "time_emb_proj": "emb_layers.1"}
_TRANSFORMER = re.compile(r"proj_in|proj_out|transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)"
                          r"|ff\.net\.(0\.proj|2))")
_LAYER = re.compile(r"(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)")
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")


def to_kohya(state: Mapping[str, torch.Tensor], scale: float, unet: Any) -> dict[str, torch.Tensor]:
    """The SDXL UNet LoRA ``state`` (peft keys: ``<module>.lora_A.weight`` / ``.lora_B.weight``; convolutions
    too) in kohya's layout: ``lora_unet_<name>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``, the ``scale``
    (alpha / rank) folded into ``lora_up`` and every ``alpha`` equal to its layer's rank. The block numbering follows
    ``unet``'s config (``layers_per_block``)."""
    per_block = unet.config.layers_per_block
    if not isinstance(per_block, int):
        raise ValueError("kohya's SDXL layout numbers blocks for one layers_per_block shared by every block")
    return write_layout(state, scale, unet, lambda module: (_sgm_name(module, per_block + 1).replace(".", "_"), None))


def _sgm_name(module: str, stride: int) -> str:
    """The SGM module name of a diffusers UNet module; ``stride`` is the number of SGM blocks per diffusers block."""
    layer, mid = _LAYER.fullmatch(module), _MID.fullmatch(module)
    if layer:
        kind, block, inner, index, rest = layer.groups()
        position = int(block) * stride + int(index)
        prefix = f"input_blocks.{1 + position}" if kind == "down_blocks" else f"output_blocks.{position}"
    elif mid:
        inner, index, rest = mid.groups()
        prefix = f"middle_block.{1 if inner == 'attentions' else 2 * int(index)}"
    else:
        raise ValueError(f"the layer {module!r} has no place in kohya's SDXL layout")
    if inner == "resnets" and rest in _RESNET:
        return f"{prefix}.0.{_RESNET[rest]}" if layer else f"{prefix}.{_RESNET[rest]}"
    if inner == "attentions" and _TRANSFORMER.fullmatch(rest):
        return f"{prefix}.1.{rest}" if layer else f"{prefix}.{rest}"
    raise ValueError(f"the layer {module!r} has no place in kohya's SDXL layout")
