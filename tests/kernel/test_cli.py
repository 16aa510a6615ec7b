"""The CLI as a user runs it: a subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from simpletuner.core.workspace import Workspace


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("command", [[], ["plugins"], ["plugins", "list"], ["env"], ["env", "show"],
                                     ["config", "check"]])
def test_help_everywhere(run_cli, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: simpletuner")
    assert len(result.stdout.splitlines()) > 4


def test_environment_lifecycle(run_cli, workspace: Workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "No environments" in run_cli("env", "list").stdout
    created = run_cli("env", "create", "first")
    assert created.returncode == 0 and "Created environment 'first'" in created.stdout
    assert (workspace.root / "configs" / "first" / "config.json").read_text().strip() == "{}"
    assert run_cli("env", "copy", "first", "second").returncode == 0
    assert run_cli("env", "rename", "second", "third").returncode == 0
    listing = json.loads(run_cli("env", "list", "--json").stdout)
    assert [e["name"] for e in listing] == ["first", "third"]

    archive = tmp_path / "first.zip"
    exported = run_cli("env", "export", "first", "-o", str(archive))
    assert exported.returncode == 0 and zipfile.is_zipfile(archive)
    imported = run_cli("env", "import", str(archive), "--name", "fourth")
    assert imported.returncode == 0 and "Imported 'fourth'" in imported.stdout

    refused = run_cli("env", "delete", "third")  # stdin is not a terminal: confirmation required
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert run_cli("env", "delete", "third", "--yes").returncode == 0
    assert [e["name"] for e in json.loads(run_cli("env", "list", "--json").stdout)] == ["first", "fourth"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["env", "create", "../escape"], "must not contain path separators"),
        (["env", "show", "missing"], "no environment 'missing'"),
        (["env", "rename", "missing", "x"], "no environment 'missing'"),
        (["env", "import", "/nonexistent.zip"], "is not a readable zip file"),
        (["config", "check", "--env", "missing"], "no environment 'missing'"),
    ],
)
def test_user_mistakes_are_one_clear_line(run_cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(*args)
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_bad_flags_are_usage_errors(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("env", "list", "--colour")
    assert result.returncode == 2 and "unrecognized arguments: --colour" in result.stderr


@pytest.fixture
def toy_environment(workspace: Workspace) -> Path:
    env = workspace.root / "configs" / "toy-lora"
    (workspace.root / "datasets" / "pets").mkdir(parents=True)
    write(env / "config.json", {"--model_family": "toy", "--model_flavour": "small", "--max_train_steps": 10,
                                "--num_train_epochs": 0, "--toy_mode": "slow"})
    write(env / "multidatabackend.json", [
        {"id": "pets", "instance_data_dir": "datasets/pets", "caption_strategy": "filename"},
        {"id": "text", "dataset_type": "text_embeds", "default": True},
    ])
    return env


def test_config_check_passes_a_valid_environment(run_cli, third_party_site: Path, toy_environment: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("config", "check", "--env", "toy-lora", env={"PYTHONPATH": str(third_party_site)})
    assert result.returncode == 0, result.stderr
    assert "Environment 'toy-lora' is valid: toy (small), lora, 1 image dataset(s) from multidatabackend.json." in (
        result.stdout)


def test_config_check_lists_every_problem(run_cli, third_party_site: Path, toy_environment: Path) -> None:  # type: ignore[no-untyped-def]
    write(toy_environment / "config.json", {"--model_family": "toy", "--lora_rnk": 4, "--toy_mode": "medium",
                                            "--max_train_steps": 5, "--num_train_epochs": 2})
    write(toy_environment / "multidatabackend.json", [{"id": "pets", "instance_data_dir": "datasets/cats"}])
    result = run_cli("config", "check", "--env", "toy-lora", env={"PYTHONPATH": str(third_party_site)})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Environment 'toy-lora' has 4 problem(s):"
    assert "  - config.json: $.lora_rnk: unknown key (did you mean 'lora_rank'?)" in lines
    assert "  - config.json: $.toy_mode: 'medium' is not one of fast, slow" in lines
    assert any("instance_data_dir" in line and "datasets/cats" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_env_show_marks_every_source(run_cli, third_party_site: Path, toy_environment: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("env", "show", "toy-lora", "--json", env={"PYTHONPATH": str(third_party_site)})
    assert result.returncode == 0, result.stderr
    options = {o["key"]: o for o in json.loads(result.stdout)["options"]}
    assert options["lora_rank"] == {"key": "lora_rank", "value": 4, "source": "flavour:toy/small", "owner": "core"}
    assert options["toy_mode"]["source"] == "env:toy-lora" and options["toy_mode"]["owner"] == "model_family:toy"
    assert "learning_rate" not in options
    everything = json.loads(run_cli("env", "show", "toy-lora", "--all", "--json",
                                    env={"PYTHONPATH": str(third_party_site)}).stdout)["options"]
    assert {"key": "learning_rate", "value": 0.0001, "source": "default", "owner": "core"} in everything


def test_presets_list_and_apply(run_cli, third_party_site: Path, toy_environment: Path) -> None:  # type: ignore[no-untyped-def]
    env = {"PYTHONPATH": str(third_party_site)}
    listing = json.loads(run_cli("presets", "--family", "toy", "--json", env=env).stdout)
    assert listing == [{"name": "light", "tradeoff": "none", "settings": {"gradient_checkpointing": False}}]
    applied = run_cli("presets", "--family", "toy", "--apply", "light", "--env", "toy-lora", env=env)
    assert applied.returncode == 0 and "gradient_checkpointing: None -> False" in applied.stdout
    assert json.loads((toy_environment / "config.json").read_text())["--gradient_checkpointing"] is False
    again = run_cli("presets", "--family", "toy", "--apply", "light", "--env", "toy-lora", env=env)
    assert "nothing changed" in again.stdout
    unknown = run_cli("presets", "--family", "toy", "--apply", "turbo", "--env", "toy-lora", env=env)
    assert unknown.returncode == 1 and "toy has no memory preset 'turbo'; available: light" in unknown.stderr
