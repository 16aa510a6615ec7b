"""Where a job runs: its executor, the executor's options and the resources it asks for.

An environment names its executor with the option ``executor`` (``local`` by default) and sets the executor's
options like any plugin's; a start request may choose another executor and override options for one job. Overrides
follow the options' trust classes exactly as values written into an environment do: plain values may be given by
anyone who may start the job, privileged ones (cluster addresses, commands, extra ``sbatch`` options) only by users
holding ``config.trusted``, and folder values must lie inside the allowed roots.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.confinement import PathPolicy
from simpletuner.core.config.converter import ValueTypeError, make_converter, structure_value
from simpletuner.core.errors import ConfigError
from simpletuner.core.interfaces.executor import Executor, Resources
from simpletuner.core.options import PATH, PRIVILEGED, bound_problems, describe_options
from simpletuner.core.plugins import Registry, suggest
from simpletuner.core.specs import ExecutorSpec, normalize_name

LOCAL = "local"
#: Permission needed to give privileged executor options in a start request.
TRUSTED = "config.trusted"


@attrs.frozen
class Placement:
    """The executor of one job and its options as JSON-ready values (every field of its options class)."""

    spec: ExecutorSpec
    options: Mapping[str, Any]


def executor_spec(registry: Registry, name: str) -> ExecutorSpec:
    """The installed executor called ``name``; :class:`ConfigError` naming the installed ones otherwise."""
    specs = registry.executors()
    spec = specs.get(normalize_name(name))
    if spec is None:
        raise ConfigError([f"$.executor: unknown executor {name!r}{suggest(normalize_name(name), specs)}; "
                           f"installed: {', '.join(specs) or 'none'}"])
    return spec


def _short_names(spec: ExecutorSpec) -> dict[str, str]:
    """Option keys by the names a start request may use: the key itself, and the key without the executor's
    prefix (``address`` for ``ray_address``)."""
    if spec.options is None:
        return {}
    prefix = spec.name.replace("-", "_") + "_"
    names: dict[str, str] = {}
    for field in attrs.fields(spec.options):
        names[field.name] = field.name
        if field.name.startswith(prefix):
            names.setdefault(field.name[len(prefix):], field.name)
    return names


def options_values(spec: ExecutorSpec, instance: Any) -> dict[str, Any]:
    """An options instance as JSON-ready values by key (empty for an executor without options)."""
    if spec.options is None or instance is None:
        return {}
    converter = make_converter()
    return {field.name: converter.unstructure(getattr(instance, field.name)) for field in attrs.fields(spec.options)}


def build_options(spec: ExecutorSpec, values: Mapping[str, Any]) -> Any:
    """The options instance of ``values`` (keys the class no longer declares are left out); None without options.

    Raises :class:`ConfigError` for a value of the wrong type, outside the option's choices or bounds, or one the
    class's validators refuse.
    """
    if spec.options is None:
        return None
    hints = typing.get_type_hints(spec.options)
    converter = make_converter()
    infos = {info.key: info for info in describe_options(spec.options)}
    typed: dict[str, Any] = {}
    problems = []
    for key, value in values.items():
        if key not in infos:
            continue
        try:
            typed[key] = structure_value(converter, value, hints[key])
        except ValueTypeError as exc:
            problems.append(f"$.executor_options.{key}: {exc}")
            continue
        problems += bound_problems(f"$.executor_options.{key}", infos[key], typed[key])
    if problems:
        raise ConfigError(problems)
    try:
        return spec.options(**typed)
    except (ValueError, TypeError) as exc:
        raise ConfigError([str(exc)]) from None


def build_executor(registry: Registry, name: str | None, values: Mapping[str, Any] | None) -> Executor:
    """The executor of a job, from its name (None: ``local``) and its stored option values."""
    spec = executor_spec(registry, name or LOCAL)
    return spec.build(build_options(spec, values or {}))


def choose(registry: Registry, config: Any, executor: str | None, overrides: Mapping[str, Any] | None,
           permissions: frozenset[str], policy: PathPolicy | None = None) -> Placement:
    """The executor of a job of an environment whose loaded config is ``config``: the one a start request names,
    else the environment's; its options are the environment's values with the request's ``overrides`` on top.

    Raises :class:`ConfigError` (every problem listed) for an unknown executor or option, a value of the wrong
    type, a privileged value given without ``config.trusted``, or a folder outside the allowed roots.
    """
    name = executor if executor is not None else config.core.executor
    spec = executor_spec(registry, name)
    base = options_values(spec, config.options_for(spec)) if spec.options is not None else {}
    overrides = dict(overrides or {})
    if not overrides:
        return Placement(spec, base)
    names = _short_names(spec)
    infos = {info.key: info for info in describe_options(spec.options)} if spec.options is not None else {}
    problems: list[str] = []
    given: dict[str, Any] = {}
    for raw_key, value in overrides.items():
        key = names.get(raw_key) if isinstance(raw_key, str) else None
        if key is None:
            known = ", ".join(sorted(n for n in names if n in infos)) or "none"
            problems.append(f"$.executor_options.{raw_key}: the executor {spec.name!r} has no such option"
                            f"{suggest(str(raw_key), names)}; its options: {known}")
            continue
        info = infos[key]
        if info.trust == PRIVILEGED and TRUSTED not in permissions:
            problems.append(f"$.executor_options.{raw_key}: {key} is privileged (it chooses where jobs and "
                            f"credentials go, or what runs); only users holding {TRUSTED} may set it for a job")
            continue
        if info.trust == PATH and policy is not None and isinstance(value, str) and not policy.contains(Path(value)):
            problems.append(f"$.executor_options.{raw_key}: {value!r} is outside the folders the server allows "
                            "(the workspace and the roots an admin added)")
            continue
        given[key] = value
    if problems:
        raise ConfigError(problems)
    options = build_options(spec, {**base, **given})
    return Placement(spec, options_values(spec, options))


def resources_of(core: Any) -> Resources:
    """The machines and processes a config asks for: ``num_machines`` nodes sharing ``num_processes`` processes."""
    nodes = max(1, int(core.num_machines))
    return Resources(nodes=nodes, processes_per_node=max(1, -(-int(core.num_processes) // nodes)))
