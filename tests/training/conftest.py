"""Fixtures of the training-engine tests: one tiny Flux pipeline per session, generated datasets, environments."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_models import build_tiny

from simpletuner.core.cli.demo_commands import make_demo_images
from simpletuner.core.workspace import Workspace


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Flux pipeline folder (built once per test session)."""
    return build_tiny("flux", tmp_path_factory.mktemp("tiny-flux") / "pipeline")


def base_config(model: Path, **overrides: Any) -> dict[str, Any]:
    """A small, fast LoRA config on the tiny pipeline."""
    config: dict[str, Any] = {
        "model_family": "flux", "pretrained_model_name_or_path": str(model), "lora_rank": 4, "lora_dropout": 0.0,
        "learning_rate": 1e-3, "max_train_steps": 4, "num_train_epochs": 0, "train_batch_size": 2, "seed": 7,
        "resolution": 128, "resolution_type": "pixel", "mixed_precision": "no", "checkpointing_steps": 0,
        "output_dir": "output/run", "flux_t5_max_tokens": 16, "report_to": "none",
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_env(workspace: Workspace, tiny_flux: Path) -> Callable[..., str]:
    """Write an environment (config, datasets file, generated images) and return its name."""

    def make(name: str = "run", *, images: int = 6, datasets: list[dict[str, Any]] | None = None,
             **overrides: Any) -> str:
        data_dir = workspace.datasets_dir / name
        if images:
            make_demo_images(data_dir, images)
        env_dir = workspace.configs_dir / name
        env_dir.mkdir(parents=True, exist_ok=True)
        overrides.setdefault("output_dir", f"output/{name}")
        (env_dir / "config.json").write_text(json.dumps(base_config(tiny_flux, **overrides)))
        entries = datasets or [
            {"id": "shapes", "instance_data_dir": str(data_dir), "caption_strategy": "textfile",
             "cache_dir_vae": f"cache/{name}/vae"},
            {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": f"cache/{name}/text"},
        ]
        (env_dir / "multidatabackend.json").write_text(json.dumps(entries))
        return name

    return make


@pytest.fixture
def run_env(workspace: Workspace) -> Callable[..., Any]:
    """Train an environment in this process; returns the TrainingResult."""
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.plugins import Registry
    from simpletuner.core.training.run import train

    def run(name: str, listeners: list[Any] | None = None) -> Any:
        registry = Registry()
        loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry)
        return train(loaded, workspace, registry, listeners=listeners)

    return run


@pytest.fixture(autouse=True)
def _reset_accelerate(fresh_accelerate_state: None) -> None:
    """Every test here may train in this process."""
