"""Every source folder is packaged under the ``simpletuner`` namespace, found from the folders (setup.py), with the
UI's data folders as declared package data."""

from __future__ import annotations

import importlib
import runpy
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_FOLDERS = ("core", "plugins", "ui", "model_families", "trackers", "publishers")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _packages() -> list[str]:
    return runpy.run_path(str(ROOT / "setup.py"), run_name="packaging-test")["simpletuner_packages"]()


def _code_packages() -> list[str]:
    return [name for name in _packages() if (ROOT / name.split(".", 1)[1].replace(".", "/") / "__init__.py").is_file()]


def test_every_package_folder_is_found() -> None:
    listed = set(_code_packages())
    expected = set()
    for top in TOP_FOLDERS:
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top)
            parts = [] if str(relative) == "." else list(relative.parts)
            expected.add(".".join(["simpletuner", top, *parts]))
    assert listed == expected


def test_nothing_installs_a_generic_top_level_name() -> None:
    for name in _packages():
        assert name.startswith("simpletuner."), name


def test_every_listed_package_imports() -> None:
    for name in _code_packages():
        module = importlib.import_module(name)
        assert module.__doc__, f"{name} has no module docstring"


def test_builtin_entry_points_point_at_packaged_modules() -> None:
    packages = set(_packages())
    for name, target in _pyproject()["project"]["entry-points"]["simpletuner"].items():
        module = target.split(":")[0]
        assert module in packages or module.rsplit(".", 1)[0] in packages, f"entry point {name} -> {target}"


def test_the_wheel_carries_every_package_its_data_and_the_entry_points(tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path), str(ROOT)], check=True, capture_output=True, text=True)
    assert "Warning" not in built.stdout + built.stderr  # no setuptools warnings about packages or data
    (wheel,) = tmp_path.glob("simpletuner-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _code_packages():
        assert package.replace(".", "/") + "/__init__.py" in names, package
    assert not any(name.split("/")[0] in TOP_FOLDERS for name in names)  # nothing outside the namespace
    for folder in ("templates", "static", "examples"):
        assert any(name.startswith(f"simpletuner/ui/{folder}/") for name in names), folder
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[simpletuner]" in text and "simpletuner = simpletuner.core.cli.main:main" in text
