"""Path confinement: every file or folder a configuration names must resolve, symbolic links followed, inside the
workspace or inside a root an admin allowed.

The server checks an environment when it is saved and again when its job starts; it also hands the allowed roots to
the training process (:data:`ROOTS_ENV_VAR`), which checks once more right before it opens anything, so a symbolic
link planted after the save does not help. ``simpletuner train`` run by the machine's own user is not confined.

Example::

    policy = PathPolicy.for_workspace(workspace, extra=["/data"])
    path_problems(workspace, loaded.environment, loaded.config, loaded.datasets, registry, policy)
    # ["$.output_dir: '/etc' resolves to /etc, outside the allowed roots (/home/me/.simpletuner, /data); ..."]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from simpletuner.core.config.datasets import DatasetEntry, entry_keys_of_trust
from simpletuner.core.config.schema import CORE_OWNER, TrainingConfig
from simpletuner.core.distributed import deepspeed_nvme_paths
from simpletuner.core.environments import Environment
from simpletuner.core.errors import ConfigError
from simpletuner.core.options import PATH, describe_options
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import normalize_name
from simpletuner.core.workspace import Workspace

#: Set by the server for its jobs: ``{"roots": [...], "denied": [...]}``, the policy it checked the job with.
ROOTS_ENV_VAR = "SIMPLETUNER_ALLOWED_ROOTS"

#: ``resume_from_checkpoint`` values that are not paths.
_NOT_PATHS = {"resume_from_checkpoint": {"latest"}}


def _resolved(path: Path) -> Path:
    # resolve() follows every symbolic link that exists and applies ".." after it, as the kernel would; a
    # lexical normalisation first would misread "link/.."
    return path.expanduser().resolve(strict=False)


@attrs.frozen
class PathPolicy:
    """The folders configured paths may resolve into, and the places inside them they may not (the server's own
    database, logs, keys and secrets); each already resolved."""

    roots: tuple[Path, ...]
    denied: tuple[Path, ...] = ()

    @classmethod
    def for_workspace(cls, workspace: Workspace, extra: Iterable[str | os.PathLike[str]] = (),
                      denied: Iterable[str | os.PathLike[str]] = ()) -> PathPolicy:
        """The workspace, its configs, datasets and output folders, and the ``extra`` roots an admin allowed;
        ``denied`` paths stay out of reach inside them."""
        found: list[Path] = []
        for root in (workspace.root, workspace.configs_dir, workspace.datasets_dir, workspace.output_dir, *extra):
            resolved = _resolved(Path(root))
            if resolved not in found:
                found.append(resolved)
        return cls(tuple(found), tuple(_resolved(Path(p)) for p in denied))

    @classmethod
    def from_environ(cls, workspace: Workspace, environ: Mapping[str, str] | None = None) -> PathPolicy | None:
        """The policy the server handed to a job (None when not started by a server: nothing is confined)."""
        raw = (os.environ if environ is None else environ).get(ROOTS_ENV_VAR)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        lists = [data.get("roots"), data.get("denied")] if isinstance(data, dict) else [None]
        if not all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in lists):
            raise ConfigError([f"{ROOTS_ENV_VAR} must be a JSON object with lists 'roots' and 'denied'"])
        return cls.for_workspace(workspace, data["roots"], data["denied"])

    def to_environ(self) -> dict[str, str]:
        """The environment variable that hands this policy to a training process."""
        return {ROOTS_ENV_VAR: json.dumps({"roots": [str(r) for r in self.roots],
                                           "denied": [str(d) for d in self.denied]})}

    def contains(self, path: Path) -> bool:
        """Whether ``path`` resolves inside one of the roots and outside every denied place."""
        resolved = _resolved(path)
        if any(resolved == place or place in resolved.parents for place in self.denied):
            return False
        return any(resolved == root or root in resolved.parents for root in self.roots)

    def problem(self, label: str, value: str, path: Path) -> str | None:
        """None when ``path`` is allowed, else a message naming the option, the resolved path and the roots."""
        if self.contains(path):
            return None
        resolved = _resolved(path)
        if any(resolved == place or place in resolved.parents for place in self.denied):
            return f"{label}: {value!r} resolves to {resolved}, a private file or folder of the server"
        return (f"{label}: {value!r} resolves to {resolved}, outside the allowed roots "
                f"({', '.join(str(r) for r in self.roots)}); use a path inside them, or ask an admin to add a root "
                "to the server's allowed roots")


def _resolve_option_path(workspace: Workspace, env: Environment, value: str, output: Path | None) -> Path:
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    if output is not None:
        # trackers and publishers resolve relative paths against the run's own folder, one level below output_dir;
        # any name stands for it, as a name does not change where '..' leads
        return output / "run" / path
    return workspace.resolve_config_path(value, env.path)


def config_path_problems(workspace: Workspace, env: Environment, config: TrainingConfig,
                         policy: PathPolicy) -> list[str]:
    """Problems of every option of trust class ``path`` in an effective config."""
    problems: list[str] = []
    output = workspace.resolve(config.core.output_dir)
    for info in config.schema.options:
        if info.trust != PATH:
            continue
        value = config.get(info.key)
        if not isinstance(value, str) or not value.strip() or value in _NOT_PATHS.get(info.key, ()):
            continue
        path = _resolve_option_path(workspace, env, value, None if info.owner == CORE_OWNER else output)
        problem = policy.problem(f"$.{info.key}", value, path)
        if problem:
            problems.append(problem)
    if not any(p.startswith("$.deepspeed_config:") for p in problems):  # its file is read only when allowed
        resolve = lambda value: workspace.resolve_config_path(value, env.path)  # noqa: E731
        for label, value in deepspeed_nvme_paths(config.core, resolve):
            problem = policy.problem(label, value, resolve(value))
            if problem:
                problems.append(problem)
    return problems


def _entry_path_keys(registry: Registry, backend: str) -> tuple[bool, frozenset[str]]:
    spec = registry.data_backends().get(normalize_name(backend))
    # a backend that keeps its caches on this machine has its cache folders checked like a local one's
    local = spec is None or spec.local_paths or spec.local_caches
    options = spec.options if spec is not None else None
    plugin_keys = frozenset(i.key for i in describe_options(options) if i.trust == PATH) if options else frozenset()
    return local, plugin_keys


def datasets_path_problems(workspace: Workspace, env: Environment, entries: Sequence[DatasetEntry],
                           registry: Registry, policy: PathPolicy) -> list[str]:
    """Problems of the folders of every dataset kept on this machine (remote backends' paths are key prefixes)."""
    entry_keys = sorted(entry_keys_of_trust(PATH))
    problems: list[str] = []
    for entry in entries:
        local, plugin_keys = _entry_path_keys(registry, entry.type)
        values = {key: getattr(entry, key) for key in entry_keys} if local else {}
        values |= {key: entry.backend_options.get(key) for key in plugin_keys}
        for key, value in values.items():
            if isinstance(value, str) and value.strip():
                path = workspace.resolve_config_path(value, env.path)
                problem = policy.problem(f"dataset {entry.id!r}.{key}", value, path)
                if problem:
                    problems.append(problem)
    return problems


def path_problems(workspace: Workspace, env: Environment, config: TrainingConfig, entries: Sequence[DatasetEntry],
                  registry: Registry, policy: PathPolicy) -> list[str]:
    """Every path of an environment (config options and datasets) that leaves the allowed roots."""
    return (config_path_problems(workspace, env, config, policy)
            + datasets_path_problems(workspace, env, entries, registry, policy))
