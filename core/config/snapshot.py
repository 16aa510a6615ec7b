"""What a run was configured with, written into its run folder as ``run_config.json`` when it starts.

The snapshot holds every option's effective value and where it came from (``default``, ``flavour:dev``,
``env:default``, ``env:<name>``), the datasets as loaded (placeholders expanded) and the LyCORIS config, so a run
can be understood, reproduced and compared with another long after its environment changed. Secrets (tokens,
passwords, keys) are never written: a set secret reads :data:`SECRET_SET`. Anyone who may see the run may read
its snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.atomic import atomic_write_json
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import normalize_name

RUN_CONFIG_FILE = "run_config.json"
#: What a snapshot shows for a secret that is set.
SECRET_SET = "(set)"
#: The version of the snapshot's layout.
SNAPSHOT_FORMAT = 1


def secret_backend_keys(registry: Registry, backend: str) -> set[str]:
    """The options of a data backend whose values are secrets (empty for an unknown backend)."""
    spec = registry.data_backends().get(normalize_name(backend))
    if spec is None or spec.options is None:
        return set()
    return {f.name for f in attrs.fields(spec.options) if f.metadata.get("simpletuner") and
            f.metadata["simpletuner"].secret}


def run_snapshot(loaded: Any, registry: Registry) -> dict[str, Any]:
    """The snapshot of a loaded environment (see the module documentation)."""
    config = loaded.config
    settings: dict[str, Any] = {}
    for info, value, source in config.effective():
        shown = config.schema.unstructure(info.key, value)
        if info.secret:
            shown = SECRET_SET if value else None
        settings[info.key] = {"value": shown, "source": source}
    return {"format": SNAPSHOT_FORMAT, "environment": loaded.environment.name, "settings": settings,
            "datasets": [_dataset(entry, registry) for entry in loaded.datasets],
            "lycoris_config": loaded.lycoris_config}


def _dataset(entry: Any, registry: Registry) -> dict[str, Any]:
    fields = {key: value for key, value in attrs.asdict(entry).items() if key != "backend_options"}
    data = {**fields, **dict(entry.backend_options)}
    for key in secret_backend_keys(registry, entry.type) & set(data):
        data[key] = SECRET_SET if data[key] else None
    return json.loads(json.dumps(data, default=str))  # paths and other objects as text


def write_run_snapshot(folder: Path, loaded: Any, registry: Registry) -> Path:
    """Write the snapshot into a run folder; returns its path."""
    path = folder / RUN_CONFIG_FILE
    atomic_write_json(path, run_snapshot(loaded, registry))
    return path


def read_run_snapshot(folder: Path) -> dict[str, Any] | None:
    """A run folder's snapshot; None when it has none (a run from before snapshots, or not a training run)."""
    try:
        data = json.loads((folder / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("settings"), Mapping) else None


def snapshot_differences(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The settings whose values differ between two snapshots, in the first one's order then the second's:
    ``{"key", "a", "b", "source_a", "source_b"}`` (a key one of them lacks reads null there)."""
    a, b = first["settings"], second["settings"]
    rows = []
    for key in [*a, *(k for k in b if k not in a)]:
        left, right = a.get(key) or {}, b.get(key) or {}
        if left.get("value") != right.get("value"):
            rows.append({"key": key, "a": left.get("value"), "b": right.get("value"),
                         "source_a": left.get("source"), "source_b": right.get("source")})
    return rows
