"""The example third-party package (examples/simpletuner-plugin-lumina2) pip-installed next to a broken plugin:
it appears in ``plugins list`` and ``/api/plugins``, and its family trains end to end on CPU; the broken plugin is
reported and harms nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from usage_code import run_as_written

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / "examples" / "simpletuner-plugin-lumina2"
BROKEN_MODULE = "simpletuner_broken_example"


def pip_install(target: Path, source: Path) -> None:
    # Installed into a folder put on the path (no network, no build isolation): the test environment's other
    # processes never see it, while the processes started here load it through its entry points.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("third-party")
    target = root / "site"
    pip_install(target, KIT)
    broken = root / "broken"
    (broken / BROKEN_MODULE).mkdir(parents=True)
    (broken / BROKEN_MODULE / "__init__.py").write_text("import a_module_that_is_not_installed\n")
    (broken / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "simpletuner-plugin-broken"
        version = "0.0.1"
        [project.entry-points.simpletuner]
        broken = "{BROKEN_MODULE}"
        [tool.setuptools]
        packages = ["{BROKEN_MODULE}"]
    """))
    pip_install(target, broken)
    return target


def env_with(site: Path, workspace: Any) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def test_plugins_list_shows_the_family_and_the_broken_plugin(site: Path, run_cli: Callable, workspace: Any) -> None:
    result = run_cli("plugins", "list", "--json", env=env_with(site, workspace))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    by_name = {(row["kind"], row["name"]): row for row in rows}
    lumina = by_name[("model_family", "lumina2")]
    assert (lumina["distribution"], lumina["version"], lumina["title"]) == (
        "simpletuner-plugin-lumina2", "0.1.0", "Lumina-Image 2.0")
    (broken,) = [row for row in rows if row["error"]]
    assert (broken["name"], broken["distribution"]) == ("broken", "simpletuner-plugin-broken")
    assert "a_module_that_is_not_installed" in broken["error"]
    assert {("model_family", "flux"), ("tracker", "local"), ("validation_method", "pipeline")} <= set(by_name)


def test_api_plugins_and_the_wizard_list_the_family(site: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import falcon.testing

    from simpletuner.core.plugins import Registry
    from simpletuner.core.workspace import Workspace
    from simpletuner.ui.app import create_app
    from simpletuner.ui.db import open_database
    from simpletuner.ui.db.migrations import migrate
    from simpletuner.ui.settings import ServerSettings

    monkeypatch.syspath_prepend(str(site))
    database = open_database(None, tmp_path)
    database.connect()
    migrate(database)
    app = create_app(database=database, registry=Registry(), workspace=Workspace(tmp_path),
                     settings=ServerSettings(bcrypt_rounds=4))
    client = falcon.testing.TestClient(app)
    password = "a long enough password 1"
    created = client.simulate_post("/api/auth/setup/first-admin", remote_addr="127.0.0.1",
                                   json={"username": "root", "email": "root@example.org", "password": password})
    assert created.status_code == 201, created.text
    login = client.simulate_post("/api/auth/login", remote_addr="127.0.0.1",
                                 json={"username": "root", "password": password})
    assert login.status_code == 200, login.text
    cookie = {"Cookie": f"st_session={login.cookies['st_session'].value}"}
    result = client.simulate_get("/api/plugins", remote_addr="127.0.0.1", headers=cookie)
    catalog = client.simulate_get("/api/wizard/catalog", remote_addr="127.0.0.1", headers=cookie)
    database.close()
    assert result.status_code == 200, result.text
    families = {row["name"]: row for row in result.json["kinds"]["model_family"]}
    assert families["lumina2"]["distribution"] == "simpletuner-plugin-lumina2"
    assert [row["name"] for row in result.json["failed"]] == ["broken"]
    # the training wizard offers the installed family with its flavours, without any UI code for it
    assert catalog.status_code == 200, catalog.text
    wizard_family = next(f for f in catalog.json["families"] if f["name"] == "lumina2")
    assert "tiny" in [flavour["name"] for flavour in wizard_family["flavours"]]


def test_the_family_trains_end_to_end_on_cpu(site: Path, run_cli: Callable, workspace: Any) -> None:
    from simpletuner.core.cli.demo_commands import make_demo_images

    make_demo_images(workspace.datasets_dir / "shapes", 1)
    env = workspace.configs_dir / "lumina"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({
        "model_family": "lumina2", "model_flavour": "tiny", "lora_rank": 8, "learning_rate": 1e-2,
        "max_train_steps": 40, "num_train_epochs": 0, "seed": 1, "resolution": 64, "mixed_precision": "no",
        "checkpointing_steps": 20, "output_dir": "output/lumina", "report_to": "local",
        "validation_prompt": "a red circle", "validation_steps": 0, "validation_resolution": "64",
        "validation_num_inference_steps": 2, "lumina2_max_tokens": 64, "publish_to": ["local"]}))
    (env / "multidatabackend.json").write_text(json.dumps([
        {"id": "shapes", "instance_data_dir": str(workspace.datasets_dir / "shapes"), "caption_strategy": "textfile",
         "cache_dir_vae": "cache/vae"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"}]))
    result = run_cli("train", "--env", "lumina", env=env_with(site, workspace), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    from simpletuner.core.training.run_folders import run_folders

    [run] = run_folders(workspace.root / "output" / "lumina")
    output = run.path
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [row["values"]["loss"] for row in rows if row["type"] == "scalars"]
    assert len(losses) == 40 and sum(losses[-10:]) < sum(losses[:10]), losses
    assert (output / "checkpoint-20" / "pytorch_lora_weights.safetensors").is_file()
    assert (output / "validation" / "validation-step000040-seed42-64x64.png").is_file()

    import torch
    from diffusers import Lumina2Pipeline

    pipeline = Lumina2Pipeline.from_pretrained(str(workspace.root / "models" / "lumina2-tiny"))
    pipeline.set_progress_bar_config(disable=True)

    def render() -> torch.Tensor:
        return torch.from_numpy(pipeline("a red circle", height=64, width=64, num_inference_steps=2,
                                         max_sequence_length=64, generator=torch.Generator().manual_seed(0),
                                         output_type="np").images)

    before = render()
    pipeline.load_lora_weights(str(output), weight_name="pytorch_lora_weights.safetensors")
    assert (render() - before).abs().mean() > 1e-4

    # the published card's code, run as written in the workspace (the tiny flavour's base model is relative to it)
    code, image, future_warnings = run_as_written(output / "published" / "README.md", workspace.root)
    assert "from diffusers import Lumina2Pipeline" in code and future_warnings == []
    base = Lumina2Pipeline.from_pretrained(str(workspace.root / "models" / "lumina2-tiny"), dtype=torch.bfloat16)(
        "a red circle", num_inference_steps=2, width=64, height=64, generator=torch.manual_seed(42)).images[0]
    assert np.abs(image - np.asarray(base, dtype=np.int16)).mean() > 0.5
