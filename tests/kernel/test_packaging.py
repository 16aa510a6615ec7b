"""Every source folder is packaged under the ``simpletuner`` namespace."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_FOLDERS = ("core", "plugins", "ui", "model_families", "trackers", "publishers")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_folder_is_listed() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    package_dir = setuptools["package-dir"]
    listed = set(setuptools["packages"])
    expected = set()
    for top in TOP_FOLDERS:
        assert package_dir[f"simpletuner.{top}"] == top
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top)
            parts = [] if str(relative) == "." else list(relative.parts)
            expected.add(".".join(["simpletuner", top, *parts]))
    assert expected - listed == set(), f"folders missing from pyproject packages: {sorted(expected - listed)}"
    assert listed - expected == set(), f"packages without a folder: {sorted(listed - expected)}"


def test_nothing_installs_a_generic_top_level_name() -> None:
    for name in _pyproject()["tool"]["setuptools"]["packages"]:
        assert name.startswith("simpletuner."), name


def test_every_listed_package_imports() -> None:
    for name in _pyproject()["tool"]["setuptools"]["packages"]:
        module = importlib.import_module(name)
        assert module.__doc__, f"{name} has no module docstring"


def test_builtin_entry_points_point_at_packaged_modules() -> None:
    packages = set(_pyproject()["tool"]["setuptools"]["packages"])
    for name, target in _pyproject()["project"]["entry-points"]["simpletuner"].items():
        module = target.split(":")[0]
        assert module in packages or module.rsplit(".", 1)[0] in packages, f"entry point {name} -> {target}"
