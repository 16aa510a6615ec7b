"""Environments: discovery of SimpleTuner's layout, default merge, atomic writes, safe names and archives."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from simpletuner.core.atomic import atomic_write_json
from simpletuner.core.config import load_environment
from simpletuner.core.environments import EnvironmentStore, validate_environment_name
from simpletuner.core.errors import ConfigError, WorkspaceError
from simpletuner.core.workspace import Workspace

from .toy_plugins import EverythingPlugin, ToyFamilyPlugin


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def registry(registry_with):  # type: ignore[no-untyped-def]
    registry_with(ToyFamilyPlugin(), name="toy-plugin")
    return registry_with(EverythingPlugin(), name="everything")


@pytest.fixture
def simpletuner_root(workspace: Workspace) -> Path:
    """A SimpleTuner checkout's config/ folder: top-level default config, one environment, and noise."""
    root = workspace.root / "SimpleTuner"
    config = root / "config"
    (root / "datasets" / "pets").mkdir(parents=True)
    write(config / "config.json", {"--learning_rate": "5e-5", "--lora_rank": 32, "--seed": 7})
    write(config / "pets" / "config.json", {
        "--model_family": "toy", "--model_flavour": "large", "--lora_type": "lycoris", "--lora_rank": 8,
        "--data_backend_config": "config/pets/multidatabackend.json", "--merge_environment_config": "true",
        "--aspect_bucket_rounding": 2, "--max_train_steps": 100, "--num_train_epochs": 0,
    })
    write(config / "pets" / "multidatabackend.json", [
        {"id": "pets", "type": "local", "instance_data_dir": "datasets/pets", "caption_strategy": "filename"},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"},
    ])
    write(config / "pets" / "lycoris_config.json", {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000,
                                                     "linear_alpha": 1, "factor": 16})
    (config / "not-an-env").mkdir()
    write(config / ".hidden" / "config.json", {})
    workspace.update_settings(configs_dir=str(config))
    return root


def test_simpletuner_config_folder_is_discovered_and_loads(workspace, simpletuner_root, registry) -> None:  # type: ignore[no-untyped-def]
    store = EnvironmentStore(workspace.configs_dir)
    assert [e.name for e in store.list()] == ["default", "pets"]
    loaded = load_environment(workspace, store, "pets", registry)
    core = loaded.config.core
    assert (core.model_family, core.model_flavour, core.lora_rank, core.learning_rate, core.seed) == (
        "toy", "large", 8, 5e-5, 7)
    assert loaded.config.sources["learning_rate"] == "env:default"
    assert loaded.config.sources["lora_rank"] == "env:pets"
    assert [d.id for d in loaded.datasets] == ["pets", "text"]
    assert loaded.datasets_path == simpletuner_root / "config" / "pets" / "multidatabackend.json"
    assert loaded.lycoris_config["algo"] == "lokr"
    assert loaded.warnings == ["aspect_bucket_rounding: a SimpleTuner option that has no effect here; remove it "
                               "to silence this warning"]
    # writing back keeps SimpleTuner's "--" keys and only the environment's own values
    written = loaded.config.to_file_dict()
    assert "--learning_rate" not in written and written["--lora_rank"] == 8
    assert written["--aspect_bucket_rounding"] == 2  # ignored here, but never dropped from the user's file


def test_without_merge_the_default_environment_is_not_used(workspace, simpletuner_root, registry) -> None:  # type: ignore[no-untyped-def]
    store = EnvironmentStore(workspace.configs_dir)
    env = store.get("pets")
    data = env.read_config()
    data["--merge_environment_config"] = False
    env.write_config(data)
    loaded = load_environment(workspace, store, "pets", registry)
    assert loaded.config.core.learning_rate == 1e-4 and loaded.config.sources.get("learning_rate") is None


def test_load_reports_config_and_dataset_problems_together(workspace, simpletuner_root, registry) -> None:  # type: ignore[no-untyped-def]
    store = EnvironmentStore(workspace.configs_dir)
    env = store.get("pets")
    env.write_config({"model_family": "toy", "lora_rnk": 4})
    write(env.path / "multidatabackend.json", [{"id": "pets", "instance_data_dir": "nowhere"}])
    with pytest.raises(ConfigError) as info:
        load_environment(workspace, store, "pets", registry)
    problems = info.value.problems
    assert "config.json: $.lora_rnk: unknown key (did you mean 'lora_rank'?)" in problems
    assert any(p.startswith("multidatabackend.json: dataset 'pets': instance_data_dir") for p in problems)
    assert any(p.startswith("multidatabackend.json: no text_embeds dataset") for p in problems)


def test_invalid_json_names_the_file_and_line(workspace, simpletuner_root, registry) -> None:  # type: ignore[no-untyped-def]
    store = EnvironmentStore(workspace.configs_dir)
    store.get("pets").config_path.write_text('{"lora_rank": 4,\n  oops}')
    with pytest.raises(ConfigError, match="invalid JSON at line 2, column 3"):
        load_environment(workspace, store, "pets", registry)
    store.get("pets").config_path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="JSON nested too deeply to read"):
        load_environment(workspace, store, "pets", registry)


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "a\\b", ".hidden", "a..b", "-dash", "x" * 101, "sp ace"])
def test_invalid_environment_names_are_refused(name: str) -> None:
    with pytest.raises(WorkspaceError):
        validate_environment_name(name)


def test_create_copy_rename_delete(tmp_path: Path) -> None:
    store = EnvironmentStore(tmp_path / "configs")
    store.create("one", {"lora_rank": 4})
    store.copy("one", "two")
    store.rename("two", "three")
    assert [e.name for e in store.list()] == ["one", "three"]
    assert store.get("three").read_config() == {"lora_rank": 4}
    with pytest.raises(WorkspaceError, match="already exists"):
        store.create("one")
    with pytest.raises(WorkspaceError, match=r"no environment 'two'.*existing: one, three"):
        store.get("two")
    store.delete("one")
    assert [e.name for e in store.list()] == ["three"]
    assert [p.name for p in (tmp_path / "configs").iterdir()] == ["three"]  # no staging leftovers


def test_a_crash_mid_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EnvironmentStore(tmp_path)
    env = store.create("safe", {"lora_rank": 4})

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        env.write_config({"lora_rank": 8, "padding": "x" * 100_000})
    assert env.read_config() == {"lora_rank": 4}
    assert sorted(p.name for p in env.path.iterdir()) == ["config.json"]


def test_atomic_write_keeps_file_mode(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    target.write_text("{}")
    target.chmod(0o600)
    atomic_write_json(target, {"a": 1})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and json.loads(target.read_text()) == {"a": 1}


def test_export_then_import(tmp_path: Path) -> None:
    store = EnvironmentStore(tmp_path / "configs")
    env = store.create("orig", {"lora_rank": 4}, datasets=[{"id": "x"}])
    (env.path / "lycoris_config.json").write_text('{"algo": "lokr"}')
    archive = store.export("orig", tmp_path / "orig.zip")
    assert sorted(zipfile.ZipFile(archive).namelist()) == [
        "orig/config.json", "orig/lycoris_config.json", "orig/multidatabackend.json"]
    imported = store.import_(archive, name="copy")
    assert imported.read_config() == {"lora_rank": 4} and imported.lycoris_file() is not None
    with pytest.raises(WorkspaceError, match="already exists"):
        store.import_(archive)  # its top folder "orig" exists


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"../evil/config.json": "{}"}, "unsafe path"),
        ({"/abs/config.json": "{}"}, "unsafe path"),
        ({"config.json": "{}", "link": None}, "link or special file"),
        ({"notes.txt": "hi"}, "holds no config.json"),
        ({"config.json": "{not json"}, "invalid JSON"),
    ],
)
def test_unsafe_or_invalid_archives_are_refused_and_leave_nothing(tmp_path: Path, entries, message) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, content in entries.items():
            if content is None:
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, "/etc/passwd")
            else:
                zf.writestr(name, content)
    configs = tmp_path / "configs"
    store = EnvironmentStore(configs)
    with pytest.raises((WorkspaceError, ConfigError), match=message):
        store.import_(archive, name="bad")
    assert not configs.exists() or list(configs.iterdir()) == []
    assert not (tmp_path / "evil").exists()
