"""Throw-away plugins and distributions for kernel tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from simpletuner.core.plugins import Registry

TOY_FAMILY_MODULE = '''
"""A throw-away model family registered through a real entry point."""
import attrs
from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.options import option
from simpletuner.core.specs import Flavour, MemoryPreset, ModelFamilySpec


@attrs.define(kw_only=True)
class ToyOptions:
    toy_guidance: float = option(3.5, help="Guidance of the toy family.", section="model", minimum=0)
    toy_mode: str = option("fast", help="Mode.", section="model", choices=("fast", "slow"))


@hookimpl
def register_model_families(register):
    register(ModelFamilySpec(
        name="{name}", title="Toy family", description="A tiny family for tests.",
        options=ToyOptions if {with_options} else None,
        flavours=(Flavour(name="small", pretrained="toy/small", settings={{"lora_rank": 4}}),
                  Flavour(name="large", pretrained="toy/large")),
        precisions=("no_change",),
        memory_presets=(MemoryPreset(name="light", tradeoff="none", settings={{"gradient_checkpointing": False}}),),
        factory=lambda: None,
    ))
'''


def write_distribution(root: Path, dist_name: str, module: str, source: str, ep_name: str) -> Path:
    """Write a minimal installable distribution with one ``simpletuner`` entry point."""
    folder = root / dist_name
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(source)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist_name}"
        version = "1.2.3"

        [project.entry-points.simpletuner]
        {ep_name} = "{module}"

        [tool.setuptools]
        packages = ["{module}"]
    """))
    return folder


def pip_install_target(folders: list[Path], target: Path) -> None:
    """Install distributions into ``target`` (a folder later put on sys.path), without network or build isolation."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), *map(str, folders)],
        check=True, capture_output=True, text=True,
    )


@pytest.fixture(scope="session")
def third_party_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder holding three pip-installed distributions: a toy family, a broken plugin and a conflicting
    family. Put it on PYTHONPATH of a child process to make them visible."""
    root = tmp_path_factory.mktemp("dists")
    sources = [
        write_distribution(root, "simpletuner-plugin-toy", "st_toy",
                           TOY_FAMILY_MODULE.format(name="toy", with_options=True), "toy"),
        write_distribution(root, "simpletuner-plugin-broken", "st_broken",
                           "raise RuntimeError('this plugin is broken on purpose')\n", "broken"),
    ]
    site = root / "site"
    pip_install_target(sources, site)
    return site


@pytest.fixture(scope="session")
def conflicting_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder with two distributions that both register the model family ``toy``."""
    root = tmp_path_factory.mktemp("conflict")
    sources = [
        write_distribution(root, "simpletuner-plugin-toy", "st_toy",
                           TOY_FAMILY_MODULE.format(name="toy", with_options=False), "toy"),
        write_distribution(root, "simpletuner-plugin-toy-fork", "st_toy_fork",
                           TOY_FAMILY_MODULE.format(name="toy", with_options=False), "toy_fork"),
    ]
    site = root / "site"
    pip_install_target(sources, site)
    return site


@pytest.fixture
def empty_registry() -> Iterator[Registry]:
    """A registry without entry points; plugins registered in a test are dropped with it."""
    yield Registry(load_entry_points=False)


@pytest.fixture
def registry_with(empty_registry: Registry):  # type: ignore[no-untyped-def]
    """Register throw-away plugin objects for one test: ``registry_with(plugin, name=...)``; unregistered after."""
    names: list[str] = []

    def register(plugin: object, name: str) -> Registry:
        empty_registry.register_plugin(plugin, name)
        names.append(name)
        return empty_registry

    yield register
    for name in names:
        empty_registry.unregister_plugin(name)
