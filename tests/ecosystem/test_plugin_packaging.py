"""The ecosystem plugins are installed entry points that import nothing heavy and show up in ``plugins list``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

ENTRY_POINTS = {
    "tracker_local": "simpletuner.trackers.local",
    "tracker_tensorboard": "simpletuner.trackers.tensorboard",
    "tracker_wandb": "simpletuner.trackers.wandb",
    "validation_methods": "simpletuner.plugins.validation",
    "publisher_hf_hub": "simpletuner.publishers.hf_hub",
    "publisher_local": "simpletuner.publishers.local",
}
HEAVY = ("torch", "diffusers", "transformers", "peft", "wandb", "tensorboard", "huggingface_hub", "PIL")


def test_entry_points_are_installed() -> None:
    from importlib.metadata import entry_points

    installed = {ep.name: ep.value for ep in entry_points(group="simpletuner")}
    assert {name: installed.get(name) for name in ENTRY_POINTS} == ENTRY_POINTS


def test_plugin_modules_import_nothing_heavy() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for module in {list(ENTRY_POINTS.values())!r}:\n"
        "    importlib.import_module(module)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(output) == []


def test_plugins_list_shows_them(run_cli: Callable) -> None:
    result = run_cli("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    rows = rows["plugins"] if isinstance(rows, dict) else rows
    found = {(row["kind"], row["name"]) for row in rows}
    assert {("tracker", "wandb"), ("tracker", "tensorboard"), ("tracker", "local"), ("publisher", "hf-hub"),
            ("publisher", "local"), ("validation_method", "pipeline"),
            ("validation_method", "external-script")} <= found
    assert not [row for row in rows if row.get("error")]
