"""The final model files: a diffusers-loadable LoRA safetensors file (with training metadata in its header), or
the full trained component as a diffusers folder."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simpletuner.core.atomic import atomic_write_bytes
from simpletuner.core.training.adapter import adapter_config, trained_state_dict

LORA_FILE = "pytorch_lora_weights.safetensors"
#: Header key of the training metadata (JSON: base model, family, flavour, step, the run's config).
TRAINING_METADATA_KEY = "simpletuner_training"
_ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers reads the LoRA config back from this header key


def lora_bytes(model: Any, prefix: str, core: Any, training_metadata: Mapping[str, Any]) -> bytes:
    """The LoRA of ``model`` in diffusers' layout (``<prefix>.<module>.lora_A.weight``) as safetensors bytes."""
    from safetensors.torch import save

    state = {f"{prefix}.{key}": value.contiguous() for key, value in trained_state_dict(model, core).items()}
    packed = {f"{prefix}.{key}": value for key, value in adapter_config(model).items()}
    metadata = {
        "format": "pt",
        _ADAPTER_METADATA_KEY: json.dumps(packed, indent=2, sort_keys=True, default=str),
        TRAINING_METADATA_KEY: json.dumps(dict(training_metadata), sort_keys=True, default=str),
    }
    return save(state, metadata=metadata)


def save_lora(path: Path, model: Any, prefix: str, core: Any, training_metadata: Mapping[str, Any]) -> Path:
    """Write the LoRA file atomically and return its path."""
    atomic_write_bytes(path, lora_bytes(model, prefix, core, training_metadata))
    return path


def read_lora(path: Path, prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A LoRA file's weights (peft key names, prefix removed) and its header metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        state = {key.removeprefix(prefix + "."): handle.get_tensor(key) for key in handle.keys()}
    return state, metadata


def save_full(folder: Path, model: Any) -> Path:
    """Write the fully trained component with diffusers' ``save_pretrained``."""
    model.save_pretrained(folder, safe_serialization=True)
    return folder
