"""Tiny pipeline folders (built once per session): Flux, Sana and PixArt by name, any family through tiny_folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_models import build_tiny

from simpletuner.core.plugins import Registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The registry of the installed plugins (the families register through their entry points)."""
    return Registry()


@pytest.fixture(scope="session")
def flux_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("flux", tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="session")
def sana_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("sana", tmp_path_factory.mktemp("tiny-sana"))


@pytest.fixture(scope="session")
def pixart_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("pixart", tmp_path_factory.mktemp("tiny-pixart"))


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The tiny pipeline folder of a family by name, each built once per session."""
    built: dict[str, Path] = {}

    def folder(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return folder


@pytest.fixture(autouse=True)
def _reset_accelerate(fresh_accelerate_state: None) -> None:
    """Every test here may train in this process."""
