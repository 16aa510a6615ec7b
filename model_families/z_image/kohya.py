"""Z-Image LoRAs in kohya's layout: ``lora_unet_`` and the module names of Tongyi's original checkpoint with
underscores for dots (e.g. ``lora_unet_layers_0_attention_qkv``), which ComfyUI loads (its Z-Image model keeps those
names) and diffusers reads back with ``_convert_non_diffusers_z_image_lora_to_diffusers``.

The original attention fuses diffusers' ``to_q``, ``to_k`` and ``to_v`` into one ``qkv`` layer, whose LoRA is the
three stacked (see :mod:`simpletuner.model_families.kohya_layout`), and calls ``to_out.0`` ``out``; the feed-forward
and modulation layers keep their names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from simpletuner.model_families.kohya_layout import Placement, write_layout

_PLAIN = {"attention.to_out.0": "attention_out", "feed_forward.w1": "feed_forward_w1",
          "feed_forward.w2": "feed_forward_w2", "feed_forward.w3": "feed_forward_w3",
          "adaLN_modulation.0": "adaLN_modulation_0"}
_QKV = ("attention.to_q", "attention.to_k", "attention.to_v")
_BLOCK = re.compile(r"(layers|noise_refiner|context_refiner)\.(\d+)\.(.+)")


def to_kohya(state: Mapping[str, torch.Tensor], scale: float, transformer: Any) -> dict[str, torch.Tensor]:
    """The Z-Image transformer LoRA ``state`` (peft keys: ``<module>.lora_A.weight`` / ``.lora_B.weight``) in
    kohya's layout: ``lora_unet_<name>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``, the ``scale``
    (alpha / rank) folded into ``lora_up`` and every ``alpha`` equal to its layer's rank."""
    return write_layout(state, scale, transformer, _place)


def _place(module: str) -> Placement:
    match = _BLOCK.fullmatch(module)
    if match is None or (match[3] not in _PLAIN and match[3] not in _QKV):
        raise ValueError(f"the layer {module!r} has no place in kohya's Z-Image layout")
    stem = f"{match[1]}_{match[2]}_"
    if match[3] in _QKV:
        return stem + "attention_qkv", (f"{match[1]}.{match[2]}.", _QKV)
    return stem + _PLAIN[match[3]], None
