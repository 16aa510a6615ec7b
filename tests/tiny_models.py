"""Tiny random-weight pipelines for tests, found through the registry as any installed family's would be."""

from __future__ import annotations

from pathlib import Path

from simpletuner.core.plugins import Registry


def build_tiny(family: str, folder: Path) -> Path:
    """Build the tiny pipeline the ``family`` spec declares into ``folder``."""
    tiny = Registry().model_family(family).tiny
    assert tiny is not None, f"the {family} family declares no tiny model"
    return tiny.build(folder)
