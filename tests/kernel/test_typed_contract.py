"""The plugin contract type-checks: ``mypy --strict`` passes on the hookspecs, the specs, the interfaces and every
built-in plugin's entry module (each registered through pyproject's entry points), and no hook implementation needs
a ``type: ignore``."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_FOLDERS = ("core", "plugins", "ui", "model_families", "trackers", "publishers")


def _entry_module_files() -> list[Path]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    files = []
    for target in project["entry-points"]["simpletuner"].values():
        parts = target.split(":")[0].split(".")[1:]  # drop "simpletuner"
        module = ROOT.joinpath(*parts)
        files.append(module / "__init__.py" if module.is_dir() else module.with_suffix(".py"))
    return files


def test_hook_implementations_need_no_type_ignore() -> None:
    for path in _entry_module_files():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"def register_\w+\([^)]*\)[^\n]*", text):
            assert "type: ignore" not in match.group(0), f"{path}: {match.group(0)}"


@pytest.mark.timeout(300)
def test_mypy_strict_passes_on_the_plugin_contract(tmp_path: Path) -> None:
    # The folders install under the simpletuner namespace; give mypy that layout through links.
    package = tmp_path / "simpletuner"
    package.mkdir()
    for top in TOP_FOLDERS:
        (package / top).symlink_to(ROOT / top)
    contract = [package / "core" / "hookspecs.py", package / "core" / "specs.py", package / "core" / "interfaces"]
    entries = [package / path.relative_to(ROOT) for path in _entry_module_files()]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--namespace-packages", "--explicit-package-bases",
         "--follow-imports=silent", "--no-incremental", *map(str, contract + entries)],
        cwd=tmp_path, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
