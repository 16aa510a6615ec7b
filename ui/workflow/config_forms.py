"""Configuration tabs: every option of the core and the installed plugins with its effective value and source,
and changes validated by the config loader itself before anything is written."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from simpletuner.core.config.checks import check_config
from simpletuner.core.config.confinement import PathPolicy, config_path_problems
from simpletuner.core.config.converter import ValueTypeError
from simpletuner.core.config.loading import build_schema, config_layers, env_source, flavour_layer
from simpletuner.core.config.schema import DEFAULT_SOURCE, ConfigSchema, Layer, TrainingConfig, strip_key
from simpletuner.core.config.trust import config_privileged
from simpletuner.core.environments import Environment, EnvironmentStore
from simpletuner.core.errors import ConfigError
from simpletuner.core.options import PRIVILEGED, SECTIONS
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Kind, normalize_name
from simpletuner.core.workspace import Workspace

#: ``[layer] $.key.inner.path: message``: a problem of one option, possibly of a part of its value (a prompt of a
#: prompt library), which is shown beside the option with the part named.
_PROBLEM = re.compile(r"^(?:\[(?P<layer>[^\]]+)\] )?\$\.(?P<key>[A-Za-z0-9_]+)(?P<inner>(?:\.[^:]+|\[\d+\])*): "
                      r"(?P<message>.*)$", re.S)
#: The plugin kind whose registered names a ``choices_from`` option accepts.
_CHOICE_KINDS = {"model_family": Kind.MODEL_FAMILY, "tracker": Kind.TRACKER, "publisher": Kind.PUBLISHER,
                 "validation_method": Kind.VALIDATION_METHOD, "data_backend": Kind.DATA_BACKEND,
                 "executor": Kind.EXECUTOR}


@attrs.frozen
class Validation:
    """The outcome of checking a change: the file it would write and the problems, by key and general."""

    raw: dict[str, Any]
    field_errors: dict[str, list[str]]
    errors: list[str]
    #: With ``review=True``: what the change does, option by option (see :func:`review_rows`).
    review: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        """Whether the change may be saved."""
        return not self.field_errors and not self.errors

    def to_json(self) -> dict[str, Any]:
        """JSON-ready answer."""
        return {"ok": self.ok, "field_errors": self.field_errors, "errors": self.errors}


@attrs.frozen
class Effective:
    """Every option's effective value (as JSON) and its source (``default``, ``flavour:<family>/<flavour>``,
    ``env:<name>``), with the loader's problems; when the layers do not load, the file's values and defaults."""

    values: dict[str, Any]
    sources: dict[str, str]
    problems: list[str]
    warnings: list[str]
    config: TrainingConfig | None = attrs.field(eq=False, repr=False)


def effective_settings(schema: ConfigSchema, registry: Registry, layers: list[Layer], env: Environment) -> Effective:
    """Load ``layers`` as the environment would be loaded (default environment, flavour, option defaults)."""
    own_source = env_source(env.name)
    try:
        config, warnings = schema.load(layers, own_source=own_source, flavour_settings=flavour_layer(registry, layers))
    except ConfigError as exc:
        # A broken file still opens: what the file says, else the option's default.
        own = {strip_key(k): v for k, v in _own_layer(layers, env).values.items()}
        values = {info.key: own.get(info.key, info.default) for info in schema.options}
        sources = {info.key: own_source if info.key in own else DEFAULT_SOURCE for info in schema.options}
        return Effective(values, sources, list(exc.problems), [], None)
    values, sources = {}, {}
    for info, value, source in config.effective():
        values[info.key] = schema.unstructure(info.key, value)
        sources[info.key] = source
    return Effective(values, sources, [], list(warnings), config)


def review_rows(schema: ConfigSchema, before: Effective, after: Effective, raw_before: Mapping[str, Any],
                raw_after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What a change does, option by option: the effective value and source before and after, for every option
    whose value or source changes (setting a key to its default changes only the source) and every other key of
    the file that changes. Secret values are never included (``secret: true`` instead)."""
    rows = []
    for info in schema.options:
        key = info.key
        if before.values.get(key) == after.values.get(key) and before.sources.get(key) == after.sources.get(key):
            continue
        row = {"key": key, "old": before.values.get(key), "old_source": before.sources.get(key),
               "new": after.values.get(key), "new_source": after.sources.get(key)}
        if info.secret:
            row.update(old=None, new=None, secret=True)
        rows.append(row)
    old_file = {strip_key(k): v for k, v in raw_before.items()}
    new_file = {strip_key(k): v for k, v in raw_after.items()}
    for key in sorted((set(old_file) | set(new_file)) - {info.key for info in schema.options}):
        if old_file.get(key) != new_file.get(key):  # keys without an option here (kept verbatim in the file)
            rows.append({"key": key, "old": old_file.get(key), "old_source": "file" if key in old_file else None,
                         "new": new_file.get(key), "new_source": "file" if key in new_file else None})
    return sorted(rows, key=lambda row: row["key"])


def dynamic_choices(registry: Registry, choices_from: str | None) -> list[str] | None:
    """Allowed values of an option whose choices are the names of installed plugins (or precisions)."""
    if choices_from is None:
        return None
    if choices_from == "precision":
        levels = {"no_change"}
        for spec in registry.quantizers().values():
            levels.update(spec.precisions)  # type: ignore[attr-defined]
        return sorted(levels)
    kind = _CHOICE_KINDS.get(choices_from)
    names = list(registry.specs(kind)) if kind else []
    return ["none", *names] if choices_from == "tracker" else names


def applicable_owners(registry: Registry, values: Mapping[str, Any]) -> set[str]:
    """The plugins whose options apply to an environment with these effective ``values``: its model family, the
    quantizer of its base model's precision, its trackers, publishers, validation method and executor. Options of
    data backends (set per dataset on the Datasets page) and of login providers (server settings) never apply."""
    owners = {"core"}
    family = values.get("model_family")
    spec = registry.find_model_family(family) if isinstance(family, str) else None
    if spec is not None:
        owners.add(f"{Kind.MODEL_FAMILY.value}:{spec.name}")
    quantizer = registry.quantizer_for(str(values.get("base_model_precision") or "no_change"))
    if quantizer is not None:
        owners.add(f"{Kind.QUANTIZER.value}:{quantizer.name}")
    chosen = {Kind.TRACKER: values.get("report_to"), Kind.PUBLISHER: values.get("publish_to"),
              Kind.VALIDATION_METHOD: values.get("validation_method"), Kind.EXECUTOR: values.get("executor")}
    if values.get("push_to_hub"):
        chosen[Kind.PUBLISHER] = [*_names(chosen[Kind.PUBLISHER]), "hf-hub"]
    for kind, names in chosen.items():
        owners.update(f"{kind.value}:{normalize_name(name)}" for name in _names(names))
    return owners


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    return [str(v) for v in value or ()]


def option_sections(schema: ConfigSchema, registry: Registry, values: Mapping[str, Any],
                    own_keys: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The tabs in display order, each with the metadata of the options that apply to the environment (core first,
    then plugins; see :func:`applicable_owners`). An option the environment's own file sets is always shown, so
    that no value is hidden from the user who may change or remove it."""
    by_section: dict[str, list[dict[str, Any]]] = {key: [] for key in SECTIONS}
    owners, own = applicable_owners(registry, values), set(own_keys)
    for info in schema.options:
        if info.owner not in owners and info.key not in own:
            continue
        data = info.to_json()
        data["choices"] = data["choices"] or dynamic_choices(registry, info.choices_from)
        by_section.setdefault(info.section, []).append(data)
    return [{"key": key, "title": SECTIONS.get(key, key.title()), "options": options}
            for key, options in by_section.items()]


def split_problems(problems: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """``"$.key: message"`` lines by key (``"$.key.part: message"`` as ``"part: message"``); lines that name no
    key (or another layer) stay general."""
    by_key: dict[str, list[str]] = {}
    general: list[str] = []
    for problem in problems:
        match = _PROBLEM.match(problem)
        if match and not match.group("layer"):
            inner = match.group("inner").lstrip(".")
            message = f"{inner}: {match.group('message')}" if inner else match.group("message")
            by_key.setdefault(match.group("key"), []).append(message)
        else:
            general.append(problem)
    return by_key, general


@attrs.frozen
class WriteRules:
    """What the writer of a change may do: set privileged options (``trusted``), and which roots paths may
    resolve into (``policy``)."""

    workspace: Workspace
    policy: PathPolicy
    trusted: bool

    def problems(self, schema: ConfigSchema, env: Environment, before: Mapping[str, Any], after: Mapping[str, Any],
                 config: TrainingConfig | None) -> list[str]:
        """``$.key: message`` lines for privileged values the writer may not change and paths outside the roots."""
        problems: list[str] = []
        if not self.trusted:
            keys = {info.key for info in schema.options if info.trust == PRIVILEGED}
            old, new = config_privileged(before, keys), config_privileged(after, keys)
            problems += [f"$.{key}: {PRIVILEGED_MESSAGE}" for key in sorted(set(old) | set(new))
                         if old.get(key) != new.get(key)]
        if config is not None:
            problems += config_path_problems(self.workspace, env, config, self.policy)
        return problems


PRIVILEGED_MESSAGE = ("a privileged option (it runs a program or chooses where credentials or data are sent); only "
                      "users holding config.trusted may set, change or unset it")


def _own_layer(layers: list[Layer], env: Environment) -> Layer:
    return next(layer for layer in layers if layer.source == env_source(env.name))


def validate_change(store: EnvironmentStore, env: Environment, registry: Registry, values: Mapping[str, Any],
                    unset: Iterable[str] = (), review: bool = False, rules: WriteRules | None = None) -> Validation:
    """Apply ``values`` (set) and ``unset`` (removed) to the environment's own file in memory and check the result
    exactly as loading it would, and against the writer's ``rules``; nothing is written. With ``review``, also
    compare the effective settings before and after."""
    schema = build_schema(registry)
    layers = config_layers(store, env)
    own = dict(_own_layer(layers, env).values)
    dashed = bool(own) and all(str(k).startswith("--") for k in own)
    file_key = {strip_key(k): k for k in own}
    field_errors: dict[str, list[str]] = {}
    for key in unset:
        own.pop(file_key.get(key, key), None)
    for key, value in values.items():
        if not schema.knows(key):
            hint = schema.closest(key)
            field_errors.setdefault(key, []).append("unknown option" + (f" (did you mean {hint!r}?)" if hint else ""))
            continue
        try:
            typed = schema.structure(key, value)
        except ValueTypeError as exc:
            field_errors.setdefault(key, []).append(str(exc))
            continue
        own[file_key.get(key, f"--{key}" if dashed else key)] = schema.unstructure(key, typed)
    new_layers = [layer if layer.source != env_source(env.name) else Layer(layer.source, own) for layer in layers]
    after = effective_settings(schema, registry, new_layers, env)
    problems = after.problems if after.config is None else check_config(after.config, registry)[0]
    if rules is not None:
        problems = [*problems, *rules.problems(schema, env, _own_layer(layers, env).values, own, after.config)]
    by_key, errors = split_problems(problems)
    for key, messages in by_key.items():
        field_errors.setdefault(key, []).extend(messages)
    rows = None
    if review:
        before = effective_settings(schema, registry, layers, env)
        rows = review_rows(schema, before, after, _own_layer(layers, env).values, own)
    return Validation(own, field_errors, errors, rows)


def config_view(store: EnvironmentStore, env: Environment, registry: Registry) -> dict[str, Any]:
    """Effective value and source of every option, the environment's own keys, and load problems if any."""
    schema = build_schema(registry)
    layers = config_layers(store, env)
    own = {strip_key(k): v for k, v in _own_layer(layers, env).values.items()}
    # A broken file still opens: the form shows what the file says and the loader's errors beside each field.
    current = effective_settings(schema, registry, layers, env)
    values, sources, warnings = current.values, current.sources, current.warnings
    problems = current.problems
    if current.config is not None:
        problems, more = check_config(current.config, registry)
        warnings = [*warnings, *more]
    field_errors, errors = split_problems(problems)
    secrets = {info.key for info in schema.options if info.secret}
    return {
        "environment": env.name,
        "sections": option_sections(schema, registry, values, own),
        "values": {k: (None if k in secrets else v) for k, v in values.items()},
        "secrets_set": sorted(k for k in secrets if values.get(k)),
        "sources": sources,
        "own_keys": sorted(own),
        "field_errors": field_errors,
        "errors": errors,
        "warnings": warnings,
    }
