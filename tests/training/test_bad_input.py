"""Bad input stops a run before heavy work with one clear line naming the problem and the fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simpletuner.core.cli.main import main
from simpletuner.core.workspace import Workspace


def _train(capsys: pytest.CaptureFixture[str], name: str) -> tuple[int, str]:
    code = main(["train", "--env", name])
    return code, capsys.readouterr().err


def test_missing_dataset_folder(make_env: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    name = make_env("nofolder", images=0, datasets=[
        {"id": "gone", "instance_data_dir": "/nonexistent/folder"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True},
    ])
    code, err = _train(capsys, name)
    assert code == 1
    assert "instance_data_dir '/nonexistent/folder' is not an existing folder" in err


def test_empty_dataset(make_env: Callable[..., str], workspace: Workspace,
                       capsys: pytest.CaptureFixture[str]) -> None:
    (workspace.datasets_dir / "empty").mkdir(parents=True)
    name = make_env("empty", images=0, datasets=[
        {"id": "empty", "instance_data_dir": str(workspace.datasets_dir / "empty")},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True},
    ])
    code, err = _train(capsys, name)
    assert code == 1
    assert err.count("\n") == 1 and "dataset 'empty' has no images" in err


def test_unknown_flavour(make_env: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _train(capsys, make_env("flavour", images=1, model_flavour="turbo"))
    assert code == 1
    assert "flux has no flavour 'turbo'; choose one of dev, schnell, krea" in err


def test_pretrained_folder_without_components(make_env: Callable[..., str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "not-flux"
    (broken / "transformer").mkdir(parents=True)
    (broken / "model_index.json").write_text("{}")
    code, err = _train(capsys, make_env("broken", images=1, pretrained_model_name_or_path=str(broken)))
    assert code == 1
    assert err.count("\n") == 1
    assert "is not a Flux diffusers folder: missing vae, text_encoder, tokenizer" in err


def test_all_images_too_small(make_env: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _train(capsys, make_env("small", images=2, resolution=512))
    assert code == 1
    assert "none of its 2 images can train: 2 too small (demo-000.png, demo-001.png)" in err


def test_demo_creates_an_environment_that_checks(workspace: Workspace, capsys: pytest.CaptureFixture[str],
                                                 tiny_flux: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    target = workspace.root / "models" / "tiny-flux"
    shutil.copytree(tiny_flux, target)  # the demo builds this folder when it is missing
    assert main(["demo", "--no-train", "--steps", "3"]) == 0
    assert "Created the environment 'demo-flux'" in capsys.readouterr().out
    config: dict[str, Any] = json.loads((workspace.configs_dir / "demo-flux" / "config.json").read_text())
    assert config["pretrained_model_name_or_path"] == str(target) and config["max_train_steps"] == 3
    assert main(["config", "check", "--env", "demo-flux"]) == 0
    assert len(list((workspace.datasets_dir / "demo-flux").glob("*.png"))) == 12
