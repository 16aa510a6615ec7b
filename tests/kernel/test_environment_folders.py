"""Environment folders as SimpleTuner names them ('+' in a name), and folders that cannot be used as environments:
every one is listed, the unusable ones with the reason, never silently left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simpletuner.core.environments import EnvironmentStore, validate_environment_name
from simpletuner.core.errors import WorkspaceError
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(60)


def folder(configs: Path, name: str, config: str = "{}") -> Path:
    path = configs / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(config)
    return path


@pytest.mark.parametrize("name", ["flux.peft-lora+TREAD", "sana+lokr", "a", "PixArt_900M-v0.6"])
def test_simpletuner_names_are_valid(name: str) -> None:
    assert validate_environment_name(name) == name


@pytest.mark.parametrize(("name", "reason"), [
    ("examples/flux", "path separators"), ("a\\b", "path separators"), ("..", "must not start with '.'"),
    (".hidden", "must not start with '.'"), ("a..b", "contain '..'"), ("+lead", "starting with a letter"),
    ("with space", "may use letters"), ("a?b", "may use letters"), ("a#b", "may use letters"),
    ("50%", "may use letters"), ("x" * 101, "up to 100 characters"), ("", "must not be empty"),
])
def test_unsafe_names_are_refused(name: str, reason: str) -> None:
    with pytest.raises(WorkspaceError, match=reason.replace("?", r"\?").replace(".", r"\.")):
        validate_environment_name(name)


def test_env_list_shows_every_folder_and_why_some_cannot_be_loaded(run_cli, workspace: Workspace) -> None:  # type: ignore[no-untyped-def]
    configs = workspace.configs_dir
    folder(configs, "flux.peft-lora+TREAD")
    folder(configs, "my lora")
    folder(configs, "broken", "{not json")
    folder(configs, "examples/kontext.peft-lora")
    (configs / "notes").mkdir()  # a folder without config.json is no environment
    folder(configs, ".staging")  # hidden: an unfinished create or import

    listed = run_cli("env", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert sorted(rows) == ["broken", "examples/kontext.peft-lora", "flux.peft-lora+TREAD", "my lora"]
    assert rows["flux.peft-lora+TREAD"]["error"] is None
    assert "invalid JSON at line 1" in rows["broken"]["error"]
    assert "may use letters" in rows["my lora"]["error"] and "'my-lora'" in rows["my lora"]["error"]
    assert "nested in a folder" in rows["examples/kontext.peft-lora"]["error"]

    table = run_cli("env", "list")
    assert table.returncode == 0
    assert "flux.peft-lora+TREAD" in table.stdout
    assert "my lora: cannot be loaded: environment name 'my lora' may use letters" in table.stdout
    assert "broken: cannot be loaded: invalid JSON" in table.stdout


def test_a_name_with_plus_works_through_every_command(run_cli, workspace: Workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run_cli("env", "create", "flux+a").returncode == 0
    assert run_cli("env", "copy", "flux+a", "flux+b").returncode == 0
    assert run_cli("env", "rename", "flux+b", "flux+c").returncode == 0
    assert run_cli("env", "export", "flux+c", "-o", str(tmp_path / "c.zip")).returncode == 0
    assert run_cli("env", "import", str(tmp_path / "c.zip"), "--name", "flux+d").returncode == 0
    assert run_cli("env", "delete", "flux+a", "--yes").returncode == 0
    assert [e.name for e in EnvironmentStore(workspace.configs_dir).list()] == ["flux+c", "flux+d"]
