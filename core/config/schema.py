"""The config schema: core options plus every option that installed plugins declare, in one flat key space.

:meth:`ConfigSchema.load` reads layered raw dicts (option defaults < flavour settings < the ``default`` environment <
the environment's own ``config.json``) into a :class:`TrainingConfig` whose every value remembers where it came from.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import cattrs

from simpletuner.core.config.converter import ValueTypeError, make_converter, structure_value
from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.config.legacy import ALIASES, LEGACY_KEYS, NO_EFFECT, VALUE_ALIASES
from simpletuner.core.config.refusals import REFUSED_KEYS, config_refusals
from simpletuner.core.errors import ConfigError, PluginConflictError
from simpletuner.core.options import OptionInfo, bound_problems, describe_options
from simpletuner.core.specs import Kind, PluginSpec, normalize_name

CORE_OWNER = "core"
DEFAULT_SOURCE = "default"


def strip_key(key: str) -> str:
    """A config key without SimpleTuner's optional leading ``--``."""
    return key[2:] if key.startswith("--") else key


def owner_of(spec: PluginSpec) -> str:
    """The owner label of a plugin's options, e.g. ``tracker:wandb``."""
    return f"{spec.kind.value}:{spec.name}"


@attrs.frozen
class Layer:
    """One source of raw config values, e.g. ``env:default`` or ``env:my-lora``."""

    source: str
    values: Mapping[str, Any]


@attrs.frozen
class TrainingConfig:
    """A parsed, typed configuration.

    Attributes:
        core: the core options.
        plugin_options: options instances of every plugin that declares options, by owner (``tracker:wandb``).
        sources: for every key, where its value came from (``default``, ``flavour:dev``, ``env:default``, ...).
        own_source: the source label of the environment's own file; :meth:`to_file_dict` writes those keys.
        dash_prefix: whether the environment's file wrote keys with a leading ``--`` (kept when writing back).
        ignored_values: SimpleTuner keys of the environment's own file that have no effect here, kept verbatim so
            that writing the config back loses nothing the user set.
    """

    core: CoreOptions
    plugin_options: Mapping[str, Any]
    sources: Mapping[str, str]
    own_source: str
    dash_prefix: bool
    schema: ConfigSchema = attrs.field(repr=False, eq=False)
    ignored_values: Mapping[str, Any] = attrs.field(factory=dict)

    def get(self, key: str) -> Any:
        """The effective value of ``key``."""
        owner = self.schema.owner_of_key(key)
        target = self.core if owner == CORE_OWNER else self.plugin_options[owner]
        return getattr(target, key)

    def options_for(self, spec: PluginSpec) -> Any:
        """The options instance of a plugin (None if it declares no options)."""
        return self.plugin_options.get(owner_of(spec))

    def own_keys(self) -> list[str]:
        """Keys whose value this environment's own file sets."""
        return [k for k, src in self.sources.items() if src == self.own_source]

    def to_file_dict(self) -> dict[str, Any]:
        """The environment's own keys as JSON-ready values, in SimpleTuner's format (with ``--`` if it had it)."""
        prefix = "--" if self.dash_prefix else ""
        data = {prefix + key: self.schema.unstructure(key, self.get(key)) for key in self.own_keys()}
        data.update({prefix + key: value for key, value in self.ignored_values.items()})
        return data

    def effective(self) -> list[tuple[OptionInfo, Any, str]]:
        """Every option with its effective value and source, in schema order."""
        return [(info, self.get(info.key), self.sources.get(info.key, DEFAULT_SOURCE)) for info in self.schema.options]


class ConfigSchema:
    """All known options. Build it with :meth:`from_specs` (usually through the registry's plugins)."""

    def __init__(self, groups: Sequence[tuple[str, type]]) -> None:
        self.converter: cattrs.Converter = make_converter()
        self._groups = list(groups)
        self._owner: dict[str, str] = {}
        self._types: dict[str, Any] = {}
        self.options: list[OptionInfo] = []
        for owner, cls in self._groups:
            hints = typing.get_type_hints(cls)
            for info in describe_options(cls, owner=owner):
                if info.key in self._owner:
                    raise PluginConflictError(
                        f"option {info.key!r} is declared by both {self._owner[info.key]} and {owner}; "
                        f"plugin options must use their own names (prefix them with the plugin name)"
                    )
                self._owner[info.key] = owner
                self._types[info.key] = hints[info.key]
                self.options.append(info)
        self._classes = dict(self._groups)
        #: model family name or alias → the owner label of that family's options (see :meth:`foreign_keys`)
        self.family_owners: dict[str, str] = {}

    @classmethod
    def from_specs(cls, specs: Iterable[PluginSpec]) -> ConfigSchema:
        """The core options plus the options class of each spec that has one."""
        groups: list[tuple[str, type]] = [(CORE_OWNER, CoreOptions)]
        specs = list(specs)
        groups += [(owner_of(s), s.options) for s in specs if s.options is not None]
        schema = cls(groups)
        for spec in specs:
            if spec.kind is Kind.MODEL_FAMILY:
                for name in (spec.name, *getattr(spec, "aliases", ())):
                    schema.family_owners[name] = owner_of(spec)
        return schema

    # -- lookups -----------------------------------------------------------------------------------------------

    def knows(self, key: str) -> bool:
        """Whether ``key`` (without ``--``) is an option."""
        return key in self._owner

    def owner_of_key(self, key: str) -> str:
        """``core`` or the plugin owner of an option."""
        return self._owner[key]

    def info(self, key: str) -> OptionInfo:
        """The description of one option."""
        return next(o for o in self.options if o.key == key)

    def closest(self, key: str) -> str | None:
        """The known key closest to a misspelt one."""
        matches = difflib.get_close_matches(key, list(self._owner), n=1, cutoff=0.6)
        return matches[0] if matches else None

    def structure(self, key: str, value: Any) -> Any:
        """Convert a raw value for ``key``; raises :class:`ValueTypeError`."""
        return structure_value(self.converter, value, self._types[key])

    def unstructure(self, key: str, value: Any) -> Any:
        """A JSON-ready form of a typed value."""
        return self.converter.unstructure(value)

    # -- loading -----------------------------------------------------------------------------------------------

    def foreign_keys(self, model_family: Any) -> dict[str, str]:
        """Options that do not act as written in a config of ``model_family``, each with why: the options of other
        model families (e.g. SDXL's ``snr_gamma`` in a Flux config), and the dataset-entry options of data backends
        (defaults for every dataset of that backend when written in a config) that SimpleTuner's configs use for
        something else (``revision``, the model's Hub revision there).

        Those SimpleTuner also has are read like keys no plugin declares: refused when they ask for something, else
        warned about; the others are warned about. Other families' options are left alone for an unknown or unset
        family (the config check names that problem)."""
        chosen = self.family_owners.get(normalize_name(model_family)) if isinstance(model_family, str) else None
        family, backend = f"{Kind.MODEL_FAMILY.value}:", f"{Kind.DATA_BACKEND.value}:"
        foreign = {}
        for key, owner in self._owner.items():
            if owner.startswith(backend) and key in REFUSED_KEYS:
                foreign[key] = (f"here it is a key of {owner[len(backend):]} dataset entries, set on the dataset in "
                                "the datasets file")
            elif chosen is not None and owner.startswith(family) and owner != chosen:
                foreign[key] = f"only the {owner[len(family):]} family trains with it"
        return foreign

    def read_layer(self, layer: Layer, foreign: Mapping[str, str] | None = None
                   ) -> tuple[dict[str, Any], list[str], list[str]]:
        """Typed values of one layer, its problems and its warnings (ignored SimpleTuner keys); ``foreign`` keys
        (:meth:`foreign_keys`) are read as SimpleTuner keys no plugin declares."""
        foreign = foreign or {}
        values: dict[str, Any] = {}
        problems: list[str] = []
        unknown: list[str] = []
        legacy: list[str] = []
        elsewhere: list[str] = []
        seen_raw: dict[str, str] = {}
        written = {self._canonical(strip_key(k)) for k in layer.values if isinstance(k, str)}
        for raw_key, raw_value in layer.values.items():
            if not isinstance(raw_key, str):
                problems.append(f"$.{raw_key!r}: keys must be strings")
                continue
            key = self._canonical(strip_key(raw_key))
            if key != strip_key(raw_key) and raw_value is None:  # SimpleTuner's null: its default, so not set
                continue
            aliased = VALUE_ALIASES.get(key, {}).get(str(raw_value).strip().lower())
            if aliased is not None and self.knows(aliased[0]) and aliased[0] not in written:
                key, raw_value = aliased
            if key in seen_raw:
                problems.append(f"$.{key}: given twice (as {seen_raw[key]!r} and {raw_key!r}); keep one")
                continue
            seen_raw[key] = raw_key
            if not self.knows(key) or key in foreign:
                if key in foreign and key not in LEGACY_KEYS:
                    elsewhere.append(key)
                elif key not in LEGACY_KEYS:
                    unknown.append(key)
                elif key not in REFUSED_KEYS:  # a refused key asking for something is an error (see load)
                    legacy.append(key)
                continue
            try:
                value = self.structure(key, raw_value)
            except ValueTypeError as exc:
                problems.append(f"$.{key}: {exc}")
                continue
            problems += self._check_bounds(key, value)
            values[key] = value
        for key in unknown:
            hint = self.closest(key)
            problems.append(f"$.{key}: unknown key" + (f" (did you mean {hint!r}?)" if hint else ""))
        warnings = [f"{key}: {NO_EFFECT}" for key in legacy]
        warnings += [f"{key}: has no effect in this config ({foreign[key]}); remove it to silence this warning"
                     for key in elsewhere]
        return values, problems, warnings

    def _canonical(self, key: str) -> str:
        """``key``, or the option it is SimpleTuner's other spelling of when that option is installed."""
        target = ALIASES.get(key)
        return target if target is not None and not self.knows(key) and self.knows(target) else key

    def _is_legacy(self, key: str) -> bool:
        return key in LEGACY_KEYS and not self.knows(self._canonical(key))

    def _refusals(self, layers: Sequence[Layer], own_source: str, merged: Mapping[str, Any],
                  foreign: Mapping[str, str]) -> list[str]:
        """Errors for SimpleTuner keys that ask for something this version (or, for ``foreign`` keys, the configured
        family) does not train, with the layer that sets each (the value of the highest layer counts, as for every
        key)."""
        legacy: dict[str, Any] = {}
        source: dict[str, str] = {}
        for layer in layers:
            for raw_key, raw_value in layer.values.items():
                if isinstance(raw_key, str) and (self._is_legacy(strip_key(raw_key)) or strip_key(raw_key) in foreign):
                    legacy[strip_key(raw_key)] = raw_value
                    source[strip_key(raw_key)] = layer.source

        def lookup(key: str) -> Any:
            if key in merged:
                return merged[key]
            if key in foreign:
                return legacy.get(key)
            return self.info(key).default if self.knows(key) else legacy.get(key)

        problems = []
        for problem in config_refusals(legacy, lookup):
            key = problem[2:].split(":", 1)[0]
            label = "" if source.get(key, own_source) == own_source else f"[{source[key]}] "
            only = f" ({foreign[key]})" if key in foreign else ""
            problems.append(label + problem + only)
        return problems

    def _check_bounds(self, key: str, value: Any) -> list[str]:
        return bound_problems(f"$.{key}", self.info(key), value)

    def load(
        self,
        layers: Sequence[Layer],
        own_source: str,
        flavour_settings: Layer | None = None,
        file_label: str | None = None,
    ) -> tuple[TrainingConfig, list[str]]:
        """Merge ``layers`` (lowest priority first) into a :class:`TrainingConfig`.

        ``flavour_settings`` sits just above the option defaults. Returns the config and warnings; raises
        :class:`ConfigError` listing every problem of every layer at once.
        """
        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        problems: list[str] = []
        warnings: list[str] = []
        ordered = ([flavour_settings] if flavour_settings else []) + list(layers)
        family = None
        for layer in ordered:
            for raw_key, raw_value in layer.values.items():
                if isinstance(raw_key, str) and strip_key(raw_key) == "model_family":
                    family = raw_value
        foreign = self.foreign_keys(family)
        for layer in ordered:
            values, layer_problems, layer_warnings = self.read_layer(layer, foreign)
            label = "" if layer.source == own_source else f"[{layer.source}] "
            problems += [label + p for p in layer_problems]
            warnings += [f"{label}{w}" for w in layer_warnings]
            merged.update(values)
            sources.update(dict.fromkeys(values, layer.source))
        problems += self._refusals(ordered, own_source, merged, foreign)
        if problems:
            raise ConfigError(problems, source=file_label)
        instances: dict[str, Any] = {}
        for owner, cls in self._groups:
            try:
                instances[owner] = cls(**{k: v for k, v in merged.items() if self._owner[k] == owner})
            except ValueError as exc:
                # An options class's own validator (attrs) rejected a value, e.g. an unknown placeholder in a
                # command; its message names the key, so it is reported like any other config problem.
                problems.append(str(exc))
        if problems:
            raise ConfigError(problems, source=file_label)
        own = next((layer for layer in layers if layer.source == own_source), None)
        dash = bool(own and own.values and all(str(k).startswith("--") for k in own.values))
        ignored = {
            strip_key(k): v for k, v in (own.values.items() if own else ())
            if isinstance(k, str) and (self._is_legacy(strip_key(k)) or strip_key(k) in foreign)
        }
        config = TrainingConfig(
            core=instances.pop(CORE_OWNER),
            plugin_options=MappingProxyType(instances),
            sources=MappingProxyType(sources),
            own_source=own_source,
            dash_prefix=dash,
            schema=self,
            ignored_values=MappingProxyType(ignored),
        )
        return config, warnings


def plugin_specs_with_options(registry: Any) -> list[PluginSpec]:
    """Every registered spec of every kind (the registry facade's view), in kind then name order."""
    return [spec for kind in Kind for spec in registry.specs(kind).values()]
