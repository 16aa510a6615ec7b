"""The typed registry facade: the only code that calls ``pm.hook``.

Everything else asks the registry (``registry.model_families()``, ``registry.get(Kind.TRACKER, "wandb")``) and
gets frozen specs, each stamped with the :class:`~simpletuner.core.specs.Provider` that registered it.
"""

from __future__ import annotations

import difflib
import threading
import traceback
from collections.abc import Iterable
from importlib.metadata import EntryPoint
from typing import Any, TypeVar

import attrs
import pluggy

from simpletuner.core.errors import PluginConflictError, UnknownPluginError
from simpletuner.core.plugins.loader import PluginFailure, load_entry_points, new_plugin_manager
from simpletuner.core.specs import (
    SPEC_CLASSES,
    AuthProviderSpec,
    DataBackendSpec,
    ExecutorSpec,
    Kind,
    ModelFamilySpec,
    PluginSpec,
    Provider,
    PublisherSpec,
    QuantizerSpec,
    TrackerSpec,
    ValidationMethodSpec,
    normalize_name,
)

S = TypeVar("S", bound=PluginSpec)


@attrs.frozen
class PluginRow:
    """One line of ``simpletuner plugins list``: a registered spec or a failed plugin."""

    kind: str | None
    name: str
    title: str | None
    description: str | None
    distribution: str | None
    version: str | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON-ready dict."""
        return attrs.asdict(self)


def suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    """Plugins of every kind, loaded lazily from entry points and from plugins registered in code.

    Args:
        entry_points: the entry points to load; None means the installed ``simpletuner`` group.
        load_entry_points: False gives an empty registry (tests register throw-away plugins into it).
        disabled: entry-point names to skip; None reads ``SIMPLETUNER_DISABLE_PLUGINS``.
    """

    def __init__(
        self,
        *,
        entry_points: Iterable[EntryPoint] | None = None,
        load_entry_points: bool = True,
        disabled: frozenset[str] | None = None,
    ) -> None:
        self._pm: pluggy.PluginManager = new_plugin_manager()
        self._entry_points = entry_points
        self._load_entry_points = load_entry_points
        self._disabled = disabled
        self._providers: dict[str, Provider] = {}
        self._import_failures: list[PluginFailure] = []
        self._hook_failures: dict[Kind, list[PluginFailure]] = {}
        self._specs: dict[Kind, dict[str, PluginSpec]] = {}
        self._loaded = False
        self._lock = threading.RLock()

    # -- plugin management -------------------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self._load_entry_points:
                self._providers, self._import_failures = load_entry_points(
                    self._pm, self._entry_points, self._disabled
                )

    def register_plugin(self, plugin: object, name: str, provider: Provider | None = None) -> None:
        """Register a plugin object (a module or an instance with ``@hookimpl`` methods) in code.

        Used by tests and by applications that embed SimpleTuner; installed plugins come through entry points.
        """
        with self._lock:
            self._ensure_loaded()
            self._pm.register(plugin, name=name)
            self._providers[name] = provider or Provider(plugin=name)
            self._specs.clear()
            self._hook_failures.clear()

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin registered with :meth:`register_plugin` (or an entry point) by name."""
        with self._lock:
            self._pm.unregister(name=name)
            self._providers.pop(name, None)
            self._specs.clear()
            self._hook_failures.clear()

    # -- collecting specs --------------------------------------------------------------------------------------

    def specs(self, kind: Kind) -> dict[str, PluginSpec]:
        """Every spec of ``kind`` by name, sorted by name. Raises :class:`PluginConflictError` on a duplicate."""
        with self._lock:
            self._ensure_loaded()
            if kind not in self._specs:
                self._specs[kind] = self._collect(kind)
            return self._specs[kind]

    def _collect(self, kind: Kind) -> dict[str, PluginSpec]:
        spec_class = SPEC_CLASSES[kind]
        collected: dict[str, PluginSpec] = {}
        failures: list[PluginFailure] = []
        hook = getattr(self._pm.hook, kind.hook_name)
        for impl in hook.get_hookimpls():
            provider = self._providers.get(impl.plugin_name) or Provider(plugin=impl.plugin_name)
            from_this_plugin: list[PluginSpec] = []

            def register(
                spec: PluginSpec, _into: list[PluginSpec] = from_this_plugin, _provider: Provider = provider
            ) -> None:
                if not isinstance(spec, spec_class):
                    raise TypeError(
                        f"{kind.hook_name} expects {spec_class.__name__} objects, got {type(spec).__name__}"
                    )
                _into.append(attrs.evolve(spec, provider=_provider))

            try:
                impl.function(register=register)
            except Exception as exc:  # a plugin's own bug: record it, keep the other plugins' specs
                failures.append(
                    PluginFailure(
                        name=impl.plugin_name,
                        distribution=provider.distribution,
                        version=provider.version,
                        error=f"{type(exc).__name__}: {exc}",
                        details=traceback.format_exc(),
                        stage=kind.hook_name,
                    )
                )
                continue
            for spec in from_this_plugin:
                existing = collected.get(spec.name)
                if existing is not None:
                    assert existing.provider is not None and spec.provider is not None
                    raise PluginConflictError(
                        f"two plugins register the {kind.value.replace('_', ' ')} {spec.name!r}: "
                        f"{existing.provider.describe()} (plugin {existing.provider.plugin!r}) and "
                        f"{spec.provider.describe()} (plugin {spec.provider.plugin!r}); "
                        f"uninstall one of them or block one with SIMPLETUNER_DISABLE_PLUGINS"
                    )
                collected[spec.name] = spec
        if kind is Kind.QUANTIZER:
            _check_precision_conflicts(collected.values())
        if kind is Kind.MODEL_FAMILY:
            _check_alias_conflicts(collected.values())
        self._hook_failures[kind] = failures
        return dict(sorted(collected.items()))

    def find(self, kind: Kind, name: str) -> PluginSpec | None:
        """The spec of ``kind`` called ``name`` or declaring it among its aliases, or None."""
        wanted = normalize_name(name)
        specs = self.specs(kind)
        found = specs.get(wanted)
        if found is None:
            found = next((s for s in specs.values() if wanted in getattr(s, "aliases", ())), None)
        return found

    def get(self, kind: Kind, name: str) -> PluginSpec:
        """The spec of ``kind`` called ``name`` (or by an alias); :class:`UnknownPluginError` lists what exists
        otherwise."""
        specs = self.specs(kind)
        spec = self.find(kind, name)
        if spec is None:
            available = ", ".join(specs) or "none installed"
            raise UnknownPluginError(
                f"unknown {kind.value.replace('_', ' ')} {name!r}{suggest(normalize_name(name), specs)}; "
                f"available: {available}"
            )
        return spec

    # -- typed accessors ---------------------------------------------------------------------------------------

    def model_families(self) -> dict[str, ModelFamilySpec]:
        """Registered model families by name."""
        return self._typed(Kind.MODEL_FAMILY, ModelFamilySpec)

    def quantizers(self) -> dict[str, QuantizerSpec]:
        """Registered quantizers by name."""
        return self._typed(Kind.QUANTIZER, QuantizerSpec)

    def data_backends(self) -> dict[str, DataBackendSpec]:
        """Registered data backends by name."""
        return self._typed(Kind.DATA_BACKEND, DataBackendSpec)

    def trackers(self) -> dict[str, TrackerSpec]:
        """Registered trackers by name."""
        return self._typed(Kind.TRACKER, TrackerSpec)

    def publishers(self) -> dict[str, PublisherSpec]:
        """Registered publishers by name."""
        return self._typed(Kind.PUBLISHER, PublisherSpec)

    def auth_providers(self) -> dict[str, AuthProviderSpec]:
        """Registered authentication providers by name."""
        return self._typed(Kind.AUTH_PROVIDER, AuthProviderSpec)

    def validation_methods(self) -> dict[str, ValidationMethodSpec]:
        """Registered validation methods by name."""
        return self._typed(Kind.VALIDATION_METHOD, ValidationMethodSpec)

    def executors(self) -> dict[str, ExecutorSpec]:
        """Registered executors (where jobs run) by name."""
        return self._typed(Kind.EXECUTOR, ExecutorSpec)

    def model_family(self, name: str) -> ModelFamilySpec:
        """The model family called ``name`` or by one of its aliases (see :meth:`get`)."""
        spec = self.get(Kind.MODEL_FAMILY, name)
        assert isinstance(spec, ModelFamilySpec)
        return spec

    def find_model_family(self, name: str) -> ModelFamilySpec | None:
        """The model family called ``name`` or by one of its aliases, or None: every place that reads a family
        name from a config looks it up here, so SimpleTuner's names work wherever a family is named."""
        spec = self.find(Kind.MODEL_FAMILY, name)
        assert spec is None or isinstance(spec, ModelFamilySpec)
        return spec

    def quantizer_for(self, precision: str) -> QuantizerSpec | None:
        """The quantizer providing ``precision`` (e.g. ``int8-quanto``), or None."""
        return next((q for q in self.quantizers().values() if precision in q.precisions), None)

    def _typed(self, kind: Kind, cls: type[S]) -> dict[str, S]:
        specs = self.specs(kind)
        assert all(isinstance(s, cls) for s in specs.values())
        return specs  # type: ignore[return-value]

    # -- reporting ---------------------------------------------------------------------------------------------

    def failures(self) -> list[PluginFailure]:
        """Plugins that failed to import, or whose hook raised (after every kind has been collected)."""
        for kind in Kind:
            self.specs(kind)
        return self._import_failures + [f for kind in Kind for f in self._hook_failures.get(kind, [])]

    def rows(self) -> list[PluginRow]:
        """Every registered spec, by kind then name, followed by every failure."""
        rows = [
            PluginRow(
                kind=kind.value,
                name=spec.name,
                title=spec.title,
                description=spec.description,
                distribution=spec.provider.distribution if spec.provider else None,
                version=spec.provider.version if spec.provider else None,
            )
            for kind in Kind
            for spec in self.specs(kind).values()
        ]
        rows += [
            PluginRow(
                kind=None,
                name=f.name,
                title=None,
                description=None,
                distribution=f.distribution,
                version=f.version,
                error=f.error if f.stage == "import" else f"{f.stage}: {f.error}",
            )
            for f in self.failures()
        ]
        return rows


def _check_alias_conflicts(specs: Iterable[PluginSpec]) -> None:
    families = list(specs)
    claimed: dict[str, PluginSpec] = {spec.name: spec for spec in families}
    for spec in families:
        assert isinstance(spec, ModelFamilySpec)
        for alias in spec.aliases:
            other = claimed.get(alias)
            if other is not None and other is not spec:
                raise PluginConflictError(
                    f"the model family name {alias!r} is claimed by {other.name!r} "
                    f"({other.provider.describe() if other.provider else '?'}) and as an alias by {spec.name!r} "
                    f"({spec.provider.describe() if spec.provider else '?'}); uninstall one of them or block one "
                    "with SIMPLETUNER_DISABLE_PLUGINS"
                )
            claimed[alias] = spec


def _check_precision_conflicts(quantizers: Iterable[PluginSpec]) -> None:
    owner: dict[str, PluginSpec] = {}
    for spec in quantizers:
        assert isinstance(spec, QuantizerSpec)
        for precision in spec.precisions:
            if precision in owner:
                other = owner[precision]
                raise PluginConflictError(
                    f"two quantizers provide the precision {precision!r}: {other.name!r} "
                    f"({other.provider.describe() if other.provider else '?'}) and {spec.name!r} "
                    f"({spec.provider.describe() if spec.provider else '?'})"
                )
            owner[precision] = spec
