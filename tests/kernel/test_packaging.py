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


def test_no_package_is_listed_twice() -> None:
    packages = _pyproject()["tool"]["setuptools"]["packages"]
    assert len(packages) == len(set(packages))


def test_the_wheel_carries_every_package_its_data_and_the_entry_points(tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("simpletuner-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _pyproject()["tool"]["setuptools"]["packages"]:
        assert package.replace(".", "/") + "/__init__.py" in names, package
    assert not any(name.split("/")[0] in TOP_FOLDERS for name in names)  # nothing outside the namespace
    for folder in ("templates", "static", "examples"):
        assert any(name.startswith(f"simpletuner/ui/{folder}/") for name in names), folder
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[simpletuner]" in text and "simpletuner = simpletuner.core.cli.main:main" in text
