"""Privileged values of an environment and the digest an approval is bound to.

An option declared with ``trust=PRIVILEGED`` runs a program, chooses where credentials or data are sent, or loads a
file that can hold code. On a shared server only users allowed to set such values may change them, and a job starts
only when the values it would use are exactly those a trusted user approved: the approval stores the
:attr:`PrivilegedValues.digest` of the values, and any change (an API write, an edited file, an import) gives a
different digest.

Example::

    values = own_privileged(workspace, store, env, registry)
    values.parts          # {'config': {'post_checkpoint_script': 'python eval.py {global_step}'}, 'datasets': {}}
    values.digest         # 'c0ffee…' (sha256 of the canonical JSON of the parts)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.datasets import entry_keys_of_trust
from simpletuner.core.config.loading import build_schema, config_layers, datasets_path, load_config
from simpletuner.core.config.schema import strip_key
from simpletuner.core.environments import DEFAULT_ENVIRONMENT, Environment, EnvironmentStore, read_json
from simpletuner.core.errors import ConfigError
from simpletuner.core.options import PRIVILEGED, describe_options
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import normalize_name
from simpletuner.core.workspace import Workspace

#: Part names of the privileged values of an environment's own file and of its datasets file (an approval is
#: bound to the values, not to the environment's name, so a rename keeps it).
CONFIG_PART = "config"
DATASETS_PART = "datasets"


def digest_of(parts: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``parts`` (sorted keys, no spaces)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@attrs.frozen
class PrivilegedValues:
    """The privileged values set in one file or environment, by part (``env:<name>``, ``datasets``)."""

    parts: Mapping[str, Mapping[str, Any]]

    @property
    def empty(self) -> bool:
        """Nothing privileged is set: there is nothing to approve."""
        return not any(self.parts.values())

    @property
    def digest(self) -> str:
        """What an approval of exactly these values is bound to."""
        return digest_of({name: dict(values) for name, values in self.parts.items() if values})

    def keys(self) -> list[str]:
        """Every privileged key that is set, as ``part: key``, for messages."""
        return [f"{name}: {key}" for name, values in sorted(self.parts.items()) for key in sorted(values)]


def privileged_keys(registry: Registry) -> frozenset[str]:
    """Config keys whose trust class is privileged (core and every installed plugin)."""
    return frozenset(info.key for info in build_schema(registry).options if info.trust == PRIVILEGED)


def config_privileged(raw: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The privileged values a raw ``config.json`` dict sets (``--`` prefixes removed, nulls are unset)."""
    wanted = frozenset(keys)
    found: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, str) and strip_key(key) in wanted and value is not None:
            found[strip_key(key)] = value
    return found


def _backend_privileged(registry: Registry, backend: Any) -> frozenset[str]:
    spec = registry.data_backends().get(normalize_name(backend)) if isinstance(backend, str) else None
    if spec is None or spec.options is None:
        return frozenset()
    return frozenset(info.key for info in describe_options(spec.options) if info.trust == PRIVILEGED)


def datasets_privileged(raw: Any, registry: Registry) -> dict[str, Any]:
    """The privileged values of a raw datasets list, keyed ``<dataset id>.<key>`` (the position if no id)."""
    if not isinstance(raw, list):
        return {}
    entry_keys = entry_keys_of_trust(PRIVILEGED)
    found: dict[str, Any] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            continue
        name = item.get("id") if isinstance(item.get("id"), str) else f"#{index}"
        keys = entry_keys | _backend_privileged(registry, item.get("type", "local"))
        for key, value in item.items():
            if key in keys and value is not None:
                found[f"{name}.{key}"] = value
    return found


def _read_datasets(path: Path | None) -> Any:
    if path is None or not path.is_file():
        return []
    try:
        return read_json(path)
    except ConfigError:
        return []


def environment_datasets_path(workspace: Workspace, store: EnvironmentStore, env: Environment,
                              registry: Registry) -> Path | None:
    """The datasets file an environment uses, even when its config does not load."""
    try:
        config, _ = load_config(store, env, registry)
    except ConfigError:
        config = None
    return datasets_path(workspace, env, config)


def privileged_from(raw_config: Mapping[str, Any], raw_datasets: Any, registry: Registry) -> PrivilegedValues:
    """The privileged values of a raw ``config.json`` dict and a raw datasets list, as an approval sees them."""
    return PrivilegedValues({CONFIG_PART: config_privileged(raw_config, privileged_keys(registry)),
                             DATASETS_PART: datasets_privileged(raw_datasets, registry)})


def own_privileged(workspace: Workspace, store: EnvironmentStore, env: Environment,
                   registry: Registry) -> PrivilegedValues:
    """What an approval of ``env`` covers: the privileged values its own file and its datasets file set."""
    try:
        raw = env.read_config()
    except ConfigError:
        raw = {}
    return privileged_from(raw, _read_datasets(environment_datasets_path(workspace, store, env, registry)), registry)


def merged_environments(store: EnvironmentStore, env: Environment) -> list[Environment]:
    """The environments whose own values a run of ``env`` uses: ``default`` first when it merges, then ``env``."""
    if len(config_layers(store, env)) > 1:
        return [store.get(DEFAULT_ENVIRONMENT), env]
    return [env]


def unapproved(workspace: Workspace, store: EnvironmentStore, env: Environment, registry: Registry,
               approved: Mapping[str, str]) -> list[tuple[str, PrivilegedValues]]:
    """The environments of a run of ``env`` whose privileged values are set but not approved as they are now.

    ``approved`` maps an environment name to the digest of the values a trusted user approved for it.
    """
    found = []
    for each in merged_environments(store, env):
        values = own_privileged(workspace, store, each, registry)
        if not values.empty and approved.get(each.name) != values.digest:
            found.append((each.name, values))
    return found
