"""Environments over HTTP: create (blank, example, copy), rename, delete, download and upload, active environment."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from simpletuner.core.config.loading import build_schema, load_config
from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.specs import normalize_name
from simpletuner.ui.workflow.examples import example_files, list_examples

from .conftest import Client, UiServer


def names(client: Client) -> list[str]:
    return [e["name"] for e in client.get("/api/environments").json["environments"]]


def test_create_copy_rename_delete(ui: UiServer, admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "alpha", "merge_defaults": True}).status_code == 201
    assert json.loads((ui.workspace.configs_dir / "alpha" / "config.json").read_text()) == {
        "merge_environment_config": True}
    listed = admin.get("/api/environments").json
    assert listed["active"] == "alpha"  # the creator works on what they created
    assert listed["environments"][0]["merges_default"] is True
    assert admin.post("/api/environments/alpha/copy", {"name": "beta"}).status_code == 201
    assert admin.patch("/api/environments/beta", {"name": "gamma"}).status_code == 200
    assert names(admin) == ["alpha", "gamma"]
    duplicate = admin.post("/api/environments", {"name": "alpha"})
    assert duplicate.status_code == 409 and "already exists" in duplicate.json["description"]
    bad = admin.post("/api/environments", {"name": "../escape"})
    assert bad.status_code == 400 and "path separators" in bad.json["description"]
    assert admin.delete("/api/environments/gamma").status_code == 204
    assert names(admin) == ["alpha"]
    assert admin.delete("/api/environments/gamma").status_code == 404


def test_download_and_upload_round_trip(ui: UiServer, admin: Client) -> None:
    admin.post("/api/environments", {"name": "alpha"})
    (ui.workspace.configs_dir / "alpha" / "lycoris_config.json").write_text('{"algo": "lokr"}')
    exported = admin.get("/api/environments/alpha/export")
    assert exported.headers["content-type"] == "application/zip"
    assert sorted(zipfile.ZipFile(io.BytesIO(exported.content)).namelist()) == [
        "alpha/config.json", "alpha/lycoris_config.json"]
    imported = admin.post("/api/environment-import?name=restored", body=exported.content,
                          headers={"Content-Type": "application/zip"})
    assert imported.status_code == 201, imported.text
    assert imported.json["lycoris_config"] == "lycoris_config.json"
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as archive:
        archive.writestr("../config.json", "{}")
    refused = admin.post("/api/environment-import", body=slip.getvalue(), headers={"Content-Type": "application/zip"})
    assert refused.status_code == 400 and "unsafe path" in refused.json["description"]
    assert names(admin) == ["alpha", "restored"]


def test_active_environment_is_per_user(ui: UiServer, admin: Client) -> None:
    admin.post("/api/environments", {"name": "alpha"})
    admin.post("/api/environments", {"name": "beta"})
    viewer = ui.user(admin, "vera", ["viewer"])
    assert viewer.get("/api/active-environment").json["name"] == "alpha"  # first one until chosen
    assert viewer.put("/api/active-environment", {"name": "beta"}).status_code == 200
    assert viewer.get("/api/active-environment").json["name"] == "beta"
    assert admin.get("/api/active-environment").json["name"] == "beta"  # the admin created beta last
    assert admin.put("/api/active-environment", {"name": "alpha"}).json["name"] == "alpha"
    assert viewer.get("/api/active-environment").json["name"] == "beta"
    assert viewer.put("/api/active-environment", {"name": "nope"}).status_code == 404
    assert viewer.post("/api/environments", {"name": "mine"}).status_code == 403


def test_every_shipped_example_loads_and_each_family_has_one(ui: UiServer, admin: Client) -> None:
    examples = list_examples()
    families = set(ui.registry.model_families())
    assert families <= {e.family for e in examples}
    assert any(e.builder == "demo" for e in examples)
    schema = build_schema(ui.registry)
    store = EnvironmentStore(ui.workspace.configs_dir)
    for example in examples:
        if example.builder or example.family not in families:
            continue
        result = admin.post("/api/environments", {"name": f"ex-{example.name}", "example": example.name})
        assert result.status_code == 201, result.text
        config, _ = load_config(store, store.get(f"ex-{example.name}"), ui.registry, schema)
        assert normalize_name(config.core.model_family) == example.family  # z_image is the family z-image
        _, datasets = example_files(example, f"ex-{example.name}", ui.workspace)
        assert (ui.workspace.datasets_dir / f"ex-{example.name}").is_dir()
        assert datasets[0]["instance_data_dir"] == str(ui.workspace.datasets_dir / f"ex-{example.name}")


@pytest.mark.timeout(180)
def test_the_tiny_demo_takes_the_name_given_for_it(ui: UiServer, admin: Client) -> None:
    created = admin.post("/api/environments", {"name": "shapes-demo", "example": "tiny-demo", "demo_steps": 3})
    assert created.status_code == 201, created.text
    assert created.json["name"] == "shapes-demo"
    config = json.loads((ui.workspace.configs_dir / "shapes-demo" / "config.json").read_text())
    assert config["max_train_steps"] == 3 and config["output_dir"] == "output/shapes-demo"
    assert not (ui.workspace.configs_dir / "demo-flux").exists()
    # a demo never lands on an existing environment (someone else's included)
    again = admin.post("/api/environments", {"name": "shapes-demo", "example": "tiny-demo", "demo_steps": 5})
    assert again.status_code == 409
    assert json.loads((ui.workspace.configs_dir / "shapes-demo" / "config.json").read_text())["max_train_steps"] == 3
