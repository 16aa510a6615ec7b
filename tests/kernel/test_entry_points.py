"""Discovery through real entry points of pip-installed distributions, seen through the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def plugins_json(run_cli, site: Path, **env: str) -> list[dict]:
    result = run_cli("plugins", "list", "--json", env={"PYTHONPATH": str(site), **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_installed_family_and_broken_plugin_are_reported(run_cli, third_party_site: Path) -> None:
    rows = plugins_json(run_cli, third_party_site)
    toy = next(r for r in rows if r["name"] == "toy")
    assert toy == {
        "kind": "model_family", "name": "toy", "title": "Toy family", "description": "A tiny family for tests.",
        "distribution": "simpletuner-plugin-toy", "version": "1.2.3", "error": None,
    }
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["kind"] is None
    assert broken["distribution"] == "simpletuner-plugin-broken" and broken["version"] == "1.2.3"
    assert broken["error"] == "RuntimeError: this plugin is broken on purpose"
    # the built-in plugins keep working beside the broken one
    assert any(r["name"] == "local" and r["kind"] == "data_backend" and r["error"] is None for r in rows)
    for row in rows:
        assert set(row) >= {"kind", "name", "distribution", "version", "error"}


def test_human_listing_shows_failures_with_their_error(run_cli, third_party_site: Path) -> None:
    result = run_cli("plugins", "list", env={"PYTHONPATH": str(third_party_site)})
    assert result.returncode == 0
    assert "toy" in result.stdout and "simpletuner-plugin-toy" in result.stdout
    assert "1 plugin(s) failed to load" in result.stdout
    assert "broken (simpletuner-plugin-broken 1.2.3): RuntimeError: this plugin is broken on purpose" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_disable_plugins_blocks_by_name(run_cli, third_party_site: Path) -> None:
    rows = plugins_json(run_cli, third_party_site, SIMPLETUNER_DISABLE_PLUGINS="broken, toy")
    names = {r["name"] for r in rows}
    assert "toy" not in names and "broken" not in names
    assert "local" in names


def test_conflict_between_two_distributions_names_both(run_cli, conflicting_site: Path) -> None:
    result = run_cli("plugins", "list", env={"PYTHONPATH": str(conflicting_site)})
    assert result.returncode == 1
    assert "simpletuner-plugin-toy 1.2.3" in result.stderr
    assert "simpletuner-plugin-toy-fork 1.2.3" in result.stderr
    assert "'toy'" in result.stderr and "Traceback" not in result.stderr


def test_listing_plugins_imports_nothing_heavy(third_party_site: Path) -> None:
    code = (
        "import sys, io, contextlib\n"
        "from simpletuner.core.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['plugins', 'list']) == 0\n"
        "from simpletuner.core.plugins import Registry\n"
        "Registry().rows()\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft', 'accelerate', 'datasets',\n"
        "                           'pyarrow') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(third_party_site)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "", f"listing plugins imported {result.stdout.strip()}"


def test_core_imports_no_web_framework() -> None:
    code = (
        "import sys, pkgutil, importlib, simpletuner.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'simpletuner.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(','.join(sorted(m for m in ('falcon', 'peewee', 'gunicorn') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
