"""``simpletuner demo --family sana|pixart`` builds the family's tiny pipeline and demo environment and trains it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from simpletuner.core.training.run_folders import run_folders
from simpletuner.core.workspace import Workspace


@pytest.mark.parametrize(("family", "model_class"), [("sana", "SanaTransformer2DModel"),
                                                     ("pixart", "PixArtTransformer2DModel")])
def test_demo_trains_the_family(run_cli: Callable[..., subprocess.CompletedProcess[str]], workspace: Workspace,
                                family: str, model_class: str) -> None:
    result = run_cli("demo", "--family", family, "--steps", "3", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    env = f"demo-{family}"
    config = json.loads((workspace.configs_dir / env / "config.json").read_text())
    assert config["model_family"] == family
    model_index = json.loads((workspace.root / "models" / f"tiny-{family}" / "model_index.json").read_text())
    assert model_index["transformer"][1] == model_class
    [run] = run_folders(workspace.root / "output" / env)
    lora = run.path / "pytorch_lora_weights.safetensors"
    assert f"Model: {lora}" in result.stdout
    assert lora.is_file() and lora.stat().st_size > 0


def test_demo_refuses_an_unknown_family(run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = run_cli("demo", "--family", "no-such-family", "--no-train")
    assert result.returncode != 0 and "no-such-family" in result.stderr and "pixart" in result.stderr
