"""The workspace: where configs, datasets, outputs, the database and the TLS key pair live.

``$SIMPLETUNER_WORKSPACE`` or ``~/.simpletuner``. Its ``workspace.json`` may point the configs, datasets and output
folders elsewhere (for example at an existing SimpleTuner ``config/`` folder).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.atomic import atomic_write_json
from simpletuner.core.errors import WorkspaceError

WORKSPACE_ENV_VAR = "SIMPLETUNER_WORKSPACE"
SETTINGS_FILE = "workspace.json"
_SETTING_KEYS = ("configs_dir", "datasets_dir", "output_dir")


def default_workspace_root() -> Path:
    """``$SIMPLETUNER_WORKSPACE`` if set, else ``~/.simpletuner``."""
    configured = os.environ.get(WORKSPACE_ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".simpletuner"


@attrs.frozen
class Workspace:
    """A workspace folder and the locations it uses."""

    root: Path = attrs.field(converter=lambda p: Path(p).expanduser().resolve())

    @classmethod
    def from_environment(cls) -> Workspace:
        """The workspace named by ``$SIMPLETUNER_WORKSPACE`` (or the default one)."""
        return cls(default_workspace_root())

    @property
    def settings_path(self) -> Path:
        """The workspace's own settings file."""
        return self.root / SETTINGS_FILE

    def settings(self) -> dict[str, Any]:
        """The settings stored in ``workspace.json`` (empty if there is none)."""
        try:
            data = json.loads(self.settings_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise WorkspaceError(f"cannot read {self.settings_path}: {exc}; fix or delete the file") from exc
        if not isinstance(data, dict):
            raise WorkspaceError(f"{self.settings_path} must hold a JSON object")
        return data

    def update_settings(self, **changes: str | None) -> None:
        """Store folder locations (``configs_dir``, ``datasets_dir``, ``output_dir``); None removes one."""
        unknown = set(changes) - set(_SETTING_KEYS)
        if unknown:
            raise WorkspaceError(f"unknown workspace settings: {', '.join(sorted(unknown))}")
        settings = self.settings()
        for key, value in changes.items():
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = str(value)
        atomic_write_json(self.settings_path, settings)

    def _folder(self, key: str, default: str) -> Path:
        value = self.settings().get(key)
        return self.resolve(value) if value else self.root / default

    @property
    def configs_dir(self) -> Path:
        """Folder of environments (``configs/``)."""
        return self._folder("configs_dir", "configs")

    @property
    def datasets_dir(self) -> Path:
        """Folder of datasets (``datasets/``)."""
        return self._folder("datasets_dir", "datasets")

    @property
    def output_dir(self) -> Path:
        """Folder of training outputs (``output/``)."""
        return self._folder("output_dir", "output")

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """An absolute path; relative paths are relative to the workspace root."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.root / candidate

    def resolve_config_path(self, value: str, environment_dir: Path | None = None) -> Path:
        """Resolve a path written in a config.

        Relative paths are tried against the workspace, then the folder above the configs folder (SimpleTuner's
        own root, so ``config/pets/multidatabackend.json`` works unchanged), then the environment's folder; the first
        that exists wins, else the workspace-relative path.
        """
        candidate = Path(value).expanduser()
        if candidate.is_absolute():
            return candidate
        options = [self.root / candidate, self.configs_dir.parent / candidate]
        if environment_dir is not None:
            options.append(environment_dir / candidate)
        return next((p for p in options if p.exists()), options[0])
