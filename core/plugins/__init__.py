"""Plugin discovery (entry points) and the typed registry facade."""

from simpletuner.core.plugins.loader import DISABLE_ENV_VAR, PluginFailure
from simpletuner.core.plugins.registry import PluginRow, Registry, suggest

__all__ = ["DISABLE_ENV_VAR", "PluginFailure", "PluginRow", "Registry", "suggest"]
