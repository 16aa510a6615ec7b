"""The pieces every family's ``kohya.py`` shares to write a LoRA in kohya's layout: ``lora_unet_<name>`` keys with
``.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``, the files ComfyUI, Forge and kohya's scripts load.

The LoRA scale (alpha / rank) is folded into ``lora_up`` and every ``alpha`` equals its layer's rank, so each reader
applies the same update whatever it does with alpha. A layer the original checkpoint fuses (e.g. one ``qkv`` for
diffusers' ``to_q``, ``to_k`` and ``to_v``) gets one LoRA: the parts' ``lora_down`` matrices stacked and their
``lora_up`` block-diagonal, so its update is exactly the separate updates one above the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

#: A module's LoRA: (lora_down / lora_A, lora_up / lora_B).
Pair = tuple[torch.Tensor, torch.Tensor]
#: Where a module's LoRA goes: its kohya name, and for a layer the original checkpoint fuses, the fused layer's
#: module prefix and the diffusers parts it is made of (None for a layer of its own).
Placement = tuple[str, tuple[str, tuple[str, ...]] | None]


def write_layout(state: Mapping[str, torch.Tensor], scale: float, model: Any, place: Callable[[str], Placement],
                 adjust: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The peft LoRA ``state`` of ``model`` in kohya's layout, each module where ``place`` puts it (raising
    ``ValueError`` for a module the layout has no place for); ``adjust(name, lora_up)`` may reorder the rows of a
    layer whose outputs the original checkpoint orders differently. ``scale`` (alpha / rank) is folded into
    ``lora_up``."""
    pairs = lora_pairs(state)
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, tuple[str, tuple[str, ...]]] = {}
    for module, (down, up) in pairs.items():
        name, fused_key = place(module)
        if fused_key is not None:
            fused[name] = fused_key
        else:
            put(out, name, down, (adjust(name, up) if adjust is not None else up) * scale)
    for name, (prefix, parts) in fused.items():
        down, up = fused_lora(pairs, prefix, parts, model)
        put(out, name, down, up * scale)
    return out


def lora_pairs(state: Mapping[str, torch.Tensor]) -> dict[str, Pair]:
    """The LoRA of each module of a peft state dict (``<module>.lora_A.weight`` / ``.lora_B.weight``)."""
    pairs = {key.removesuffix(".lora_A.weight"): (value, state[key.replace(".lora_A.", ".lora_B.")])
             for key, value in state.items() if key.endswith(".lora_A.weight")}
    if len(pairs) * 2 != len(state):
        raise ValueError("only plain LoRA weights (lora_A, lora_B) can be written in kohya's layout")
    return pairs


def fused_lora(pairs: Mapping[str, Pair], prefix: str, parts: tuple[str, ...], model: Any) -> Pair:
    """One LoRA over the fused layer whose parts are the modules ``prefix + part``: ``lora_down`` stacked and
    ``lora_up`` block-diagonal, in the order of ``parts``; a part that was not trained is a zero block as wide as
    that module of ``model``."""
    trained = [pairs[prefix + part] for part in parts if prefix + part in pairs]
    rank, in_features = trained[0][0].shape
    dtype = trained[0][0].dtype
    downs, ups = [], []
    for part in parts:
        if prefix + part in pairs:
            down, up = pairs[prefix + part]
        else:
            out_features = model.get_submodule(prefix + part).out_features
            down, up = torch.zeros(rank, in_features, dtype=dtype), torch.zeros(out_features, rank, dtype=dtype)
        downs.append(down)
        ups.append(up)
    return torch.cat(downs, dim=0), torch.block_diag(*ups)


def put(out: dict[str, torch.Tensor], name: str, down: torch.Tensor, up: torch.Tensor) -> None:
    """Write the LoRA ``lora_unet_<name>`` into ``out`` (``up`` already scaled), with ``alpha`` equal to its rank."""
    key = f"lora_unet_{name}"
    out[f"{key}.lora_down.weight"] = down.contiguous()
    out[f"{key}.lora_up.weight"] = up.contiguous()
    out[f"{key}.alpha"] = torch.tensor(float(down.shape[0]), dtype=down.dtype)
