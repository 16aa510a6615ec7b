"""The final model files: a diffusers-loadable LoRA safetensors file (with training metadata in its header), and
beside it the same LoRA in the other key layouts ``lora_save_formats`` asks for; a LyCORIS safetensors file (LyCORIS
key names, its config in the header and in ``lycoris_config.json`` beside it); or the full trained component as a
diffusers folder."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from simpletuner.core.atomic import atomic_write_bytes, atomic_write_json
from simpletuner.core.training.adapter import adapter_config, trained_state_dict
from simpletuner.core.training.lycoris import LYCORIS_CONFIG_FILE, LYCORIS_METADATA_KEY, lycoris_config_of

LORA_FILE = "pytorch_lora_weights.safetensors"
#: Header key of the training metadata (JSON: base model, family, flavour, step, the run's config).
TRAINING_METADATA_KEY = "simpletuner_training"
_ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers reads the LoRA config back from this header key


def lora_bytes(model: Any, prefix: str, core: Any, training_metadata: Mapping[str, Any]) -> bytes:
    """The LoRA of ``model`` in diffusers' layout (``<prefix>.<module>.lora_A.weight``) as safetensors bytes; a
    LyCORIS network keeps LyCORIS' own key names (``lycoris_<module_path>.<weight>``) and carries its config."""
    from safetensors.torch import save

    metadata = {"format": "pt",
                TRAINING_METADATA_KEY: json.dumps(dict(training_metadata), sort_keys=True, default=str)}
    lycoris = lycoris_config_of(model)
    if lycoris is not None:
        metadata[LYCORIS_METADATA_KEY] = json.dumps(lycoris, sort_keys=True)
        return save({k: v.contiguous() for k, v in trained_state_dict(model, core).items()}, metadata=metadata)
    state = {f"{prefix}.{key}": value.contiguous() for key, value in trained_state_dict(model, core).items()}
    packed = {f"{prefix}.{key}": value for key, value in adapter_config(model).items()}
    metadata[_ADAPTER_METADATA_KEY] = json.dumps(packed, indent=2, sort_keys=True, default=str)
    return save(state, metadata=metadata)


def save_lora(path: Path, model: Any, prefix: str, core: Any, training_metadata: Mapping[str, Any]) -> Path:
    """Write the LoRA file atomically and return its path (a LyCORIS file gets its config beside it too)."""
    atomic_write_bytes(path, lora_bytes(model, prefix, core, training_metadata))
    lycoris = lycoris_config_of(model)
    if lycoris is not None:
        atomic_write_json(path.parent / LYCORIS_CONFIG_FILE, lycoris)
    return path


def lora_layout_file(name: str) -> str:
    """File name of the final LoRA saved in the ``name`` key layout (e.g. ``kohya``)."""
    return f"pytorch_lora_weights_{name}.safetensors"


def save_lora_layouts(folder: Path, model: Any, core: Any, layouts: Mapping[str, Callable[..., Any]],
                      training_metadata: Mapping[str, Any]) -> list[Path]:
    """Write the LoRA of ``model`` in each layout of ``core.lora_save_formats`` into ``folder`` with the family's
    converters ``layouts``; returns the files written."""
    from safetensors.torch import save

    if not core.lora_save_formats:
        return []
    state = trained_state_dict(model, core)
    config = adapter_config(model)
    scale = config["lora_alpha"] / config["r"]
    metadata = {"format": "pt",
                TRAINING_METADATA_KEY: json.dumps(dict(training_metadata), sort_keys=True, default=str)}
    written = []
    for name in core.lora_save_formats:
        converted = layouts[name](state, scale, model)
        path = folder / lora_layout_file(name)
        atomic_write_bytes(path, save({k: v.contiguous() for k, v in converted.items()}, metadata=metadata))
        written.append(path)
    return written


def read_lora(path: Path, prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A LoRA file's weights (peft key names, prefix removed) and its header metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        state = {key.removeprefix(prefix + "."): handle.get_tensor(key) for key in handle.keys()}
    return state, metadata


def save_full(folder: Path, model: Any, state_dict: Mapping[str, Any] | None = None) -> Path:
    """Write the fully trained component as a diffusers folder: with diffusers' ``save_pretrained``, or — given the
    ``state_dict`` gathered from sharded processes — its config plus that state in diffusers' (sharded) file
    layout, which ``from_pretrained`` reads the same way."""
    if state_dict is None:
        model.save_pretrained(folder, safe_serialization=True)
        return folder
    from huggingface_hub import save_torch_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    save_torch_state_dict({k: _owning(v) for k, v in state_dict.items()}, folder,
                          filename_pattern="diffusion_pytorch_model{suffix}.safetensors", max_shard_size="10GB")
    return folder


def _owning(tensor: Any) -> Any:
    """``tensor`` on the CPU in storage of its own. DeepSpeed's ZeRO-3 gathers weights as views into larger
    buffers, and safetensors refuses a tensor that covers only part of its storage."""
    tensor = tensor.detach().cpu()
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor
