"""Applying a model family's memory preset (light / balanced / aggressive) to an environment's config."""

from __future__ import annotations

from typing import Any

from simpletuner.core.config.loading import env_source
from simpletuner.core.config.schema import ConfigSchema, Layer, strip_key
from simpletuner.core.environments import Environment
from simpletuner.core.errors import WorkspaceError
from simpletuner.core.specs import ModelFamilySpec


def apply_memory_preset(env: Environment, family: ModelFamilySpec, preset_name: str,
                        schema: ConfigSchema) -> dict[str, tuple[Any, Any]]:
    """Write the preset's settings into the environment's ``config.json``; return ``key -> (old, new)``.

    The result is parsed by the schema before anything is written, so a preset can never leave an invalid file;
    keys keep the file's style (with or without ``--``).
    """
    preset = family.memory_preset(preset_name)
    if preset is None:
        known = ", ".join(p.name for p in family.memory_presets) or "none"
        raise WorkspaceError(f"{family.name} has no memory preset {preset_name!r}; available: {known}")
    raw = env.read_config()
    dashed = bool(raw) and all(str(k).startswith("--") for k in raw)
    existing = {strip_key(k): k for k in raw}
    changes: dict[str, tuple[Any, Any]] = {}
    updated = dict(raw)
    for key, value in preset.settings.items():
        file_key = existing.get(key, f"--{key}" if dashed else key)
        old = raw.get(file_key)
        if old != value:
            changes[key] = (old, value)
        updated[file_key] = value
    schema.load([Layer(env_source(env.name), updated)], own_source=env_source(env.name),
                file_label=str(env.config_path))
    env.write_config(updated)
    return changes
