"""What CLI commands share: the workspace, the environment store and the plugin registry, made on first use."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace


class CliContext:
    """Lazily built collaborators of a CLI invocation."""

    def __init__(self, workspace_path: str | None = None) -> None:
        self._workspace_path = workspace_path

    @functools.cached_property
    def workspace(self) -> Workspace:
        """The workspace chosen by ``--workspace`` or the environment."""
        return Workspace(self._workspace_path) if self._workspace_path else Workspace.from_environment()

    @functools.cached_property
    def store(self) -> EnvironmentStore:
        """The environments of the workspace's configs folder."""
        return EnvironmentStore(self.workspace.configs_dir)

    @functools.cached_property
    def registry(self) -> Registry:
        """The installed plugins."""
        return Registry()


def print_json(data: Any) -> None:
    """Print JSON to stdout."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    """Print left-aligned columns."""
    table = [headers, *rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(headers))]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
