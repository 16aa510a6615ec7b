"""Example environments shipped with the package, and bootstrapping an environment from one.

Each example is a folder of ``simpletuner.ui/examples/`` holding ``example.json`` (title, family, description),
``config.json`` and ``multidatabackend.json``, whose strings may name ``{environment}`` and ``{datasets_dir}``.
An example with ``"builder": "demo"`` is the tiny demo, made by ``simpletuner demo --no-train`` in a child process
(it builds a random-weight pipeline with torch, which server processes never import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.environments import Environment, EnvironmentStore
from simpletuner.core.errors import EnvironmentExists, SimpleTunerError
from simpletuner.core.workspace import WORKSPACE_ENV_VAR, Workspace

DEMO_ENVIRONMENT = "demo-flux"
DEMO_TIMEOUT_S = 600


@attrs.frozen
class Example:
    """One shipped example."""

    name: str
    title: str
    family: str
    description: str
    builder: str | None = None

    def to_json(self, installed: bool) -> dict[str, Any]:
        """JSON-ready, with whether its family is installed."""
        return attrs.asdict(self) | {"installed": installed,
                                     "environment": DEMO_ENVIRONMENT if self.builder == "demo" else None}


def _root() -> Any:
    return resources.files("simpletuner.ui").joinpath("examples")


def list_examples() -> list[Example]:
    """Every shipped example, by name."""
    found = []
    for folder in sorted(_root().iterdir(), key=lambda p: p.name):
        meta_file = folder.joinpath("example.json")
        if not meta_file.is_file():
            continue
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        found.append(Example(name=folder.name, title=meta["title"], family=meta["family"],
                             description=meta["description"], builder=meta.get("builder")))
    return found


def get_example(name: str) -> Example:
    """The example called ``name``; the error lists the others."""
    for example in list_examples():
        if example.name == name:
            return example
    raise SimpleTunerError(f"no example {name!r}; available: {', '.join(e.name for e in list_examples())}")


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, replacement in names.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def example_files(example: Example, environment: str, workspace: Workspace) -> tuple[dict, list]:
    """The example's config and datasets list with its placeholders filled in."""
    folder = _root().joinpath(example.name)
    names = {"environment": environment, "datasets_dir": str(workspace.datasets_dir)}
    config = _fill(json.loads(folder.joinpath("config.json").read_text(encoding="utf-8")), names)
    datasets = _fill(json.loads(folder.joinpath("multidatabackend.json").read_text(encoding="utf-8")), names)
    return config, datasets


def bootstrap(example: Example, name: str, workspace: Workspace, store: EnvironmentStore, *,
              demo_steps: int = 60) -> Environment:
    """Create an environment from an example (the tiny demo is named ``demo-flux`` unless a name is given)."""
    if example.builder == "demo":
        return _build_demo(workspace, store, demo_steps, name or None)
    config, datasets = example_files(example, name, workspace)
    env = store.create(name, config, datasets)
    dataset_dirs = [d.get("instance_data_dir") for d in datasets if d.get("instance_data_dir")]
    for folder in dataset_dirs:
        Path(folder).mkdir(parents=True, exist_ok=True)  # ready for the dataset wizard's upload
    return env


def _build_demo(workspace: Workspace, store: EnvironmentStore, steps: int, name: str | None) -> Environment:
    target = name or DEMO_ENVIRONMENT
    if store.exists(target):  # the demo writes its files in place: it must never land on someone's environment
        raise EnvironmentExists(f"environment {target!r} already exists; choose another name for the demo")
    executable = Path(sys.executable).parent / "simpletuner"
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "simpletuner.core.cli.main"]
    env = {**os.environ, WORKSPACE_ENV_VAR: str(workspace.root)}
    try:
        named = ["--name", name] if name else []
        done = subprocess.run([*command, "demo", "--no-train", "--steps", str(steps), *named], capture_output=True,
                              text=True, env=env, timeout=DEMO_TIMEOUT_S, cwd=workspace.root)
    except subprocess.TimeoutExpired:
        raise SimpleTunerError(f"building the tiny demo took over {DEMO_TIMEOUT_S} s; try 'simpletuner demo "
                               "--no-train' in a terminal") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise SimpleTunerError(f"building the tiny demo failed (exit {done.returncode}): {tail}")
    return store.get(target)
