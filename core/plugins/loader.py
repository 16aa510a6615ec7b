"""Loading plugins from the ``simpletuner`` entry-point group, one entry point at a time.

An entry point that fails to import is recorded as a :class:`PluginFailure` and the others keep loading, so one
broken third-party package never takes SimpleTuner down. ``SIMPLETUNER_DISABLE_PLUGINS=a,b`` skips plugins by
entry-point name.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

import attrs
import pluggy

from simpletuner.core import hookspecs
from simpletuner.core.specs import Provider, normalize_name

DISABLE_ENV_VAR = "SIMPLETUNER_DISABLE_PLUGINS"


@attrs.frozen
class PluginFailure:
    """A plugin that could not be used: its name, the distribution that installed it and the error."""

    name: str
    distribution: str | None
    version: str | None
    error: str
    details: str = attrs.field(default="", repr=False)
    stage: str = "import"  # "import" or the hook name that raised


def disabled_plugin_names(environ: os._Environ[str] | dict[str, str] | None = None) -> frozenset[str]:
    """Names listed in ``SIMPLETUNER_DISABLE_PLUGINS`` (comma separated, normalised)."""
    raw = (environ if environ is not None else os.environ).get(DISABLE_ENV_VAR, "")
    return frozenset(normalize_name(n) for n in raw.split(",") if n.strip())


def _provider_for(ep: EntryPoint) -> Provider:
    dist = ep.dist
    return Provider(
        plugin=ep.name,
        entry_point=f"{ep.name} = {ep.value}",
        distribution=dist.metadata["Name"] if dist is not None else None,
        version=dist.version if dist is not None else None,
    )


def load_entry_points(
    pm: pluggy.PluginManager,
    eps: Iterable[EntryPoint] | None = None,
    disabled: frozenset[str] | None = None,
) -> tuple[dict[str, Provider], list[PluginFailure]]:
    """Register every entry point of the ``simpletuner`` group with ``pm``, each on its own.

    Returns the provider of each registered plugin (by pluggy plugin name) and the failures.
    """
    if eps is None:
        eps = entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    if disabled is None:
        disabled = disabled_plugin_names()
    providers: dict[str, Provider] = {}
    failures: list[PluginFailure] = []
    seen: set[str] = set()
    for ep in sorted(eps, key=lambda e: e.name):
        # The same distribution can be visible twice (e.g. an editable install and a copy on sys.path).
        if ep.name in seen or normalize_name(ep.name) in disabled:
            continue
        seen.add(ep.name)
        provider = _provider_for(ep)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # any import-time error of a third party must not stop the others
            failures.append(
                PluginFailure(
                    name=ep.name,
                    distribution=provider.distribution,
                    version=provider.version,
                    error=f"{type(exc).__name__}: {exc}",
                    details=traceback.format_exc(),
                )
            )
            continue
        providers[ep.name] = provider
    return providers, failures


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows SimpleTuner's hookspecs and nothing else yet."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm
