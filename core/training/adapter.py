"""What is trained: a PEFT LoRA on the family's trained component (diffusers' own adapter API), a LyCORIS network
(:mod:`simpletuner.core.training.lycoris`), or every weight."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from simpletuner.core.training.lycoris import attach_lycoris, lycoris_network

ADAPTER_NAME = "default"


@contextlib.contextmanager
def adapter_off(model: Any) -> Iterator[None]:
    """Run ``model`` as its base model inside the block: a PEFT LoRA's layers disabled, a LyCORIS network's
    multiplier at 0; both are restored after it (regularisation data's target is the base model's prediction)."""
    network = lycoris_network(model)
    if network is not None:
        multiplier = network.multiplier
        network.set_multiplier(0.0)
        try:
            yield
        finally:
            network.set_multiplier(multiplier)
        return
    model.disable_adapters()
    try:
        yield
    finally:
        model.enable_adapters()


def attach_lora(model: Any, targets: tuple[str, ...], core: Any) -> None:
    """Add a LoRA (rank, alpha, dropout, DoRA and initialisation from the config) on modules matching ``targets``,
    via ``add_adapter``."""
    from peft import LoraConfig

    config = LoraConfig(r=core.lora_rank, lora_alpha=core.lora_alpha or core.lora_rank,
                        lora_dropout=core.lora_dropout, target_modules=list(targets), use_dora=core.use_dora,
                        init_lora_weights="gaussian" if core.lora_init_type == "gaussian" else True)
    try:
        model.add_adapter(config, adapter_name=ADAPTER_NAME)
    except ValueError as exc:
        raise ValueError(f"cannot attach the LoRA: {exc}; check lora_target_preset") from None


def attach_adapter(model: Any, family: Any, core: Any, lycoris_config: Mapping[str, Any] | None = None) -> None:
    """Attach what ``core`` asks for: a PEFT LoRA (``lora_type: standard``) on the family's target preset, or a
    LyCORIS network (``lora_type: lycoris``) built from ``lycoris_config``. Full-rank training attaches nothing."""
    if core.model_type != "lora":
        return
    if core.lora_type == "lycoris":
        if lycoris_config is None:
            raise ValueError("lora_type is 'lycoris' but no LyCORIS config was loaded; write lycoris_config.json")
        attach_lycoris(model, lycoris_config)
        return
    attach_lora(model, family.lora_targets(core.lora_target_preset), core)


def prepare_trainable(model: Any, core: Any) -> list[Any]:
    """Freeze what is not trained and return the trained parameters, kept in float32 (they are few, and
    float32 master weights avoid update underflow under bf16/fp16 autocast) — except with ``adamw_bf16``, whose
    compensated updates are made for bf16 weights."""
    import torch

    if core.model_type == "full":
        model.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    wanted = torch.bfloat16 if core.optimizer == "adamw_bf16" else torch.float32
    for param in params:
        if param.dtype != wanted:
            param.data = param.data.to(wanted)
    return params


def adapter_config(model: Any) -> dict[str, Any]:
    """The LoRA's PEFT config as JSON-ready values (diffusers reads it back from the file header); empty for a
    LyCORIS network (its config travels under its own header key)."""
    if lycoris_network(model) is not None:
        return {}
    config = model.peft_config[ADAPTER_NAME].to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def trained_state_dict(model: Any, core: Any) -> dict[str, Any]:
    """The trained weights: the LoRA's (peft key names, without the adapter name), the LyCORIS network's (LyCORIS
    key names) or the whole model's."""
    if core.model_type == "full":
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    network = lycoris_network(model)
    if network is not None:
        return {k: v.detach().cpu() for k, v in network.state_dict().items()}
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME).items()}


def load_trained_state_dict(model: Any, state: dict[str, Any], core: Any) -> None:
    """Put weights saved by :func:`trained_state_dict` back into ``model``; a mismatch is an error."""
    if core.model_type == "full":
        model.load_state_dict(state, strict=True)
        return
    network = lycoris_network(model)
    if network is not None:
        result = network.load_state_dict(state, strict=False)
        if result.unexpected_keys or result.missing_keys:
            raise ValueError(f"LyCORIS weights do not match the configured network: unexpected "
                             f"{result.unexpected_keys[:3]}, missing {result.missing_keys[:3]}; load them with the "
                             f"lycoris_config they were trained with")
        return
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state, adapter_name=ADAPTER_NAME)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ValueError(f"checkpoint holds weights the model has no place for: {unexpected[:3]}")
