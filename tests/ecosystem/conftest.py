"""Fixtures of the ecosystem plugin tests (trackers, publishers, validation methods)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simpletuner.core.config.loading import build_schema
from simpletuner.core.config.schema import Layer, TrainingConfig
from simpletuner.core.plugins import Registry


@pytest.fixture
def registry() -> Registry:
    """The installed plugins (built-ins registered through their entry points)."""
    return Registry()


@pytest.fixture
def load_config(registry: Registry) -> Callable[..., TrainingConfig]:
    """Parse a flat config dict with the schema of the installed plugins (raises ConfigError like a real load)."""

    def load(values: dict[str, Any], reg: Registry | None = None) -> TrainingConfig:
        config, _ = build_schema(reg or registry).load([Layer("env:test", values)], own_source="env:test")
        return config

    return load


@pytest.fixture
def images(tmp_path: Path) -> Callable[..., list[Path]]:
    """Write small distinct PNG files and return their paths."""
    from PIL import Image

    def make(*names: str, size: tuple[int, int] = (16, 12)) -> list[Path]:
        folder = tmp_path / "images"
        folder.mkdir(exist_ok=True)
        paths = []
        for index, name in enumerate(names):
            path = folder / f"{name}.png"
            Image.new("RGB", size, (40 * index % 256, 200, 90)).save(path)
            paths.append(path)
        return paths

    return make


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B in offline mode, quiet, with its settings and caches under the test folder."""
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true",
                       "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR":
                       str(tmp_path / "wandb-cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
