"""``simpletuner demo`` finds families through the registry: a family added by a plugin that declares a tiny model
gets a demo exactly like the built-in ones, with its own settings; a family without one is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simpletuner.core.cli.demo_commands import create_demo, demo_families
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Flavour, ModelFamilySpec, TinyModel, lazy
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(60)


def write_tiny_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "ToyPipeline"}))
    return folder


class ToyFamilies:
    @hookimpl
    def register_model_families(self, register: RegisterModelFamily) -> None:
        register(ModelFamilySpec(
            name="toy", title="Toy", description="A toy family with a tiny model.",
            flavours=(Flavour(name="base", pretrained="toy/base"),),
            factory=lazy("builtins:object"),
            tiny=TinyModel(build=write_tiny_folder, settings={"lora_rank": 2}),
        ))
        register(ModelFamilySpec(
            name="bare", title="Bare", description="No tiny model.",
            flavours=(Flavour(name="base", pretrained="bare/base"),), factory=lazy("builtins:object"),
        ))


def test_a_plugin_familys_tiny_model_makes_its_demo(workspace: Workspace) -> None:
    registry = Registry(load_entry_points=False)
    registry.register_plugin(ToyFamilies(), "toys")
    assert list(demo_families(registry)) == ["toy"]
    env_dir = create_demo(workspace, registry, steps=3, images=2, family="toy")
    config = json.loads((env_dir / "config.json").read_text())
    assert config["model_family"] == "toy" and config["lora_rank"] == 2 and config["max_train_steps"] == 3
    assert (Path(config["pretrained_model_name_or_path"]) / "model_index.json").is_file()
    with pytest.raises(SimpleTunerError, match="no tiny model of the family 'bare'.*choose one of toy"):
        create_demo(workspace, registry, family="bare")


def test_every_built_in_family_offers_a_demo() -> None:
    assert {"flux", "sana", "pixart"} <= set(demo_families(Registry()))
