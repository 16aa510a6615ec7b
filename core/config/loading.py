"""Loading an environment: its config (with the default environment and flavour layers), its datasets file and
its LyCORIS config, checked together so that one run of ``simpletuner config check`` reports every problem.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.checks import check_config
from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.config.datasets import DatasetEntry, parse_datasets
from simpletuner.core.config.lycoris_config import lycoris_problems
from simpletuner.core.config.schema import ConfigSchema, Layer, TrainingConfig, strip_key
from simpletuner.core.environments import (
    DEFAULT_DATASETS_FILE,
    DEFAULT_ENVIRONMENT,
    Environment,
    EnvironmentStore,
    read_json,
)
from simpletuner.core.errors import ConfigError
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Kind, normalize_name
from simpletuner.core.workspace import Workspace

CONFIG_LABEL = "config.json"
_DEFAULT_OUTPUT_DIR: str = attrs.fields(CoreOptions).output_dir.default


#: Kinds whose options are server settings (configured on the server's own pages), not training options.
SERVER_KINDS = frozenset({Kind.AUTH_PROVIDER})


def build_schema(registry: Registry) -> ConfigSchema:
    """The config schema of the core plus the options of every installed plugin a training run uses (login
    providers' options are the server's, configured on the Auth Providers page)."""
    return ConfigSchema.from_specs(spec for kind in Kind if kind not in SERVER_KINDS
                                   for spec in registry.specs(kind).values())


@attrs.frozen
class LoadedEnvironment:
    """A fully loaded and checked environment."""

    environment: Environment
    config: TrainingConfig
    datasets: list[DatasetEntry]
    datasets_path: Path
    lycoris_config: dict[str, Any] | None
    warnings: list[str]


def env_source(name: str) -> str:
    """The source label of an environment's own values, e.g. ``env:my-lora``."""
    return f"env:{name}"


def _raw_value(layers: list[Layer], key: str) -> Any:
    value = None
    for layer in layers:
        for raw_key, raw_value in layer.values.items():
            if isinstance(raw_key, str) and strip_key(raw_key) == key:
                value = raw_value
    return value


def config_layers(store: EnvironmentStore, env: Environment) -> list[Layer]:
    """The raw layers of an environment: ``default`` first when merging, then its own file."""
    own = Layer(env_source(env.name), env.read_config())
    merge = _raw_value([own], "merge_environment_config")
    if env.name != DEFAULT_ENVIRONMENT and str(merge).lower() in ("true", "1", "yes") and store.exists(
        DEFAULT_ENVIRONMENT
    ):
        return [Layer(env_source(DEFAULT_ENVIRONMENT), store.get(DEFAULT_ENVIRONMENT).read_config()), own]
    return [own]


def flavour_layer(registry: Registry, layers: list[Layer]) -> Layer | None:
    """The settings pre-enabled by the chosen family's flavour, as the lowest layer."""
    family_name = _raw_value(layers, "model_family")
    if not isinstance(family_name, str):
        return None
    family = registry.find_model_family(family_name)
    if family is None:
        return None
    flavour_name = _raw_value(layers, "model_flavour")
    flavour = family.flavour(flavour_name if isinstance(flavour_name, str) else None)
    if flavour is None or not flavour.settings:
        return None
    return Layer(f"flavour:{family.name}/{flavour.name}", dict(flavour.settings))


def load_config(store: EnvironmentStore, env: Environment, registry: Registry,
                schema: ConfigSchema | None = None) -> tuple[TrainingConfig, list[str]]:
    """Parse an environment's config (without the datasets file); raises :class:`ConfigError`."""
    layers = config_layers(store, env)
    schema = schema or build_schema(registry)
    return schema.load(layers, own_source=env_source(env.name), flavour_settings=flavour_layer(registry, layers),
                       file_label=str(env.config_path))


def dataset_placeholders(store: EnvironmentStore, env: Environment) -> dict[str, str]:
    """The values of SimpleTuner's ``{model_family}`` and ``{output_dir}`` in an environment's datasets file: its
    config's values as written (so paths match SimpleTuner's), even when the config has other problems."""
    try:
        layers = config_layers(store, env)
    except ConfigError:
        layers = []
    family, output = _raw_value(layers, "model_family"), _raw_value(layers, "output_dir")
    return {"model_family": family if isinstance(family, str) else "",
            "output_dir": output if isinstance(output, str) and output else _DEFAULT_OUTPUT_DIR}


def datasets_path(workspace: Workspace, env: Environment, config: TrainingConfig | None) -> Path | None:
    """The datasets file an environment uses: ``data_backend_config`` or the file in its folder."""
    if config is not None and config.core.data_backend_config:
        return workspace.resolve_config_path(config.core.data_backend_config, env.path)
    default = env.path / DEFAULT_DATASETS_FILE
    if default.is_file():
        return default
    candidates = env.datasets_files()
    return candidates[0] if len(candidates) == 1 else None


def load_environment(workspace: Workspace, store: EnvironmentStore, name: str,
                     registry: Registry) -> LoadedEnvironment:
    """Load and check an environment, raising one :class:`ConfigError` that lists every problem."""
    env = store.get(name)
    problems: list[str] = []
    warnings: list[str] = []
    config: TrainingConfig | None = None
    try:
        config, warnings = load_config(store, env, registry)
    except ConfigError as exc:
        problems += [f"{CONFIG_LABEL}: {p}" for p in exc.problems]

    entries: list[DatasetEntry] = []
    path = datasets_path(workspace, env, config)
    if path is None:
        found = ", ".join(p.name for p in env.datasets_files())
        problems.append(
            f"datasets: no datasets file; write {env.path / DEFAULT_DATASETS_FILE} or set data_backend_config"
            + (f" (several candidates: {found})" if found else "")
        )
    elif not path.is_file():
        problems.append(f"datasets: data_backend_config {str(path)!r} does not exist")
    else:
        try:
            entries, dataset_warnings = parse_datasets(
                read_json(path),
                backend_option_types=lambda n: _backend_option_types(registry, n),
                resolve_path=lambda p: workspace.resolve_config_path(p, env.path),
                source=str(path),
                local_paths=lambda n: backend_has_local_paths(registry, n),
                placeholders=dataset_placeholders(store, env),
            )
            warnings += [f"{path.name}: {w}" for w in dataset_warnings]
        except ConfigError as exc:
            problems += [f"{path.name}: {p}" for p in exc.problems]

    lycoris: dict[str, Any] | None = None
    if config is not None:
        semantic_problems, semantic_warnings = check_config(config, registry)
        problems += [f"{CONFIG_LABEL}: {p}" for p in semantic_problems]
        warnings += semantic_warnings
        lycoris, lycoris_problems = _lycoris(workspace, env, config)
        problems += lycoris_problems
        if path is not None:
            problems += [f"{path.name}: {p}" for p in regularisation_problems(config, entries)]
    if problems:
        raise ConfigError(problems, source=f"environment {name!r}")
    assert config is not None and path is not None
    return LoadedEnvironment(env, config, entries, path, lycoris, warnings)


def regularisation_problems(config: TrainingConfig, entries: Sequence[DatasetEntry]) -> list[str]:
    """Regularisation datasets need an adapter to turn off (their target is the base model's prediction) and
    another dataset to learn from."""
    images = [e for e in entries if e.dataset_type == "image" and not e.disabled]
    regularising = [e.id for e in images if e.is_regularisation_data]
    if not regularising:
        return []
    problems = []
    if config.core.model_type != "lora":
        problems.append(f"dataset {regularising[0]!r}: is_regularisation_data trains toward the base model's own "
                        "prediction with the adapter turned off, and full-rank training has no adapter; train a LoRA "
                        "or LyCORIS (model_type: lora) or remove is_regularisation_data")
    if len(regularising) == len(images):
        problems.append("every image dataset is regularisation data, so nothing new would be learned; add a dataset "
                        "of what to train (is_regularisation_data: false)")
    return problems


def _backend_option_types(registry: Registry, name: str) -> dict[str, Any] | None:
    spec = registry.data_backends().get(normalize_name(name))
    if spec is None:
        return None
    if spec.options is None:
        return {}
    return typing.get_type_hints(spec.options)


def backend_has_local_paths(registry: Registry, name: str) -> bool:
    """Whether a data backend's entries name folders on this machine (True for unknown names)."""
    spec = registry.data_backends().get(normalize_name(name))
    return spec is None or spec.local_paths


def _lycoris(workspace: Workspace, env: Environment, config: TrainingConfig) -> tuple[dict | None, list[str]]:
    core = config.core
    if core.lycoris_config:
        path: Path | None = workspace.resolve_config_path(core.lycoris_config, env.path)
    else:
        path = env.lycoris_file()
    using = core.model_type == "lora" and core.lora_type == "lycoris"
    if path is None or not path.is_file():
        if using:
            return None, [f"lycoris: lora_type is 'lycoris' but {path or env.path / 'lycoris_config.json'} does "
                          "not exist; write it or set lycoris_config"]
        return None, []
    try:
        data = read_json(path)
    except ConfigError as exc:
        return None, [f"{path.name}: {p}" for p in exc.problems]
    if not isinstance(data, dict) or "algo" not in data:
        return None, [f"{path.name}: expected an object with at least 'algo' (lokr, locon, loha, full)"]
    if using:
        problems = [f"{path.name}: {problem}" for problem in lycoris_problems(data)]
        if problems:
            return None, problems
    return data, []

