"""Tiny Flux, Sana and PixArt pipeline folders (built once per session)."""

from __future__ import annotations

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
