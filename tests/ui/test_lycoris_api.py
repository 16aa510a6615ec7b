"""The LyCORIS config over HTTP: presets for the environment's family, checked writes of lycoris_config.json (every
problem named, nothing written), no file paths for LyCORIS to read, and only for those who may edit."""

from __future__ import annotations

import json

from .conftest import UiServer


def test_presets_and_checked_writes(ui: UiServer) -> None:
    admin = ui.admin()
    assert admin.post("/api/environments", {"name": "lyco", "example": "flux-lora"}).status_code == 201
    view = admin.get("/api/environments/lyco/lycoris")
    assert view.status_code == 200 and view.json["config"] is None
    presets = {p["name"]: p for p in view.json["presets"]}
    assert set(presets) == {"lokr", "locon", "loha", "full"}
    assert presets["lokr"]["config"]["apply_preset"] == {"target_module": ["FluxTransformerBlock",
                                                                           "FluxSingleTransformerBlock"]}
    target = ui.workspace.configs_dir / "lyco" / "lycoris_config.json"

    chosen = {**presets["lokr"]["config"], "factor": 8}
    saved = admin.put("/api/environments/lyco/lycoris", {"config": chosen})
    assert saved.status_code == 200, saved.text
    assert json.loads(target.read_text()) == chosen
    assert admin.get("/api/environments/lyco/lycoris").json["config"] == chosen

    before = target.read_bytes()
    bad = admin.put("/api/environments/lyco/lycoris", {"config": {"algo": "lokra", "factor": 0,
                                                                   "preset": "/etc/passwd"}})
    assert bad.status_code == 422
    text = "\n".join(bad.json["errors"])
    assert "'lokra' is not a LyCORIS algorithm" in text and "factor: must be -1" in text
    assert "preset files are not read" in text
    assert target.read_bytes() == before
    assert admin.put("/api/environments/lyco/lycoris", {"config": "lokr"}).status_code == 400


def test_only_editors_write_and_shared_files_are_not_edited_here(ui: UiServer) -> None:
    admin = ui.admin()
    assert admin.post("/api/environments", {"name": "mine", "example": "flux-lora"}).status_code == 201
    viewer = ui.user(admin, "vic", ["viewer"])
    assert viewer.get("/api/environments/mine/lycoris").status_code == 200
    assert viewer.put("/api/environments/mine/lycoris", {"config": {"algo": "lokr"}}).status_code == 403

    shared = ui.workspace.root / "shared-lycoris.json"
    shared.write_text(json.dumps({"algo": "locon"}))
    assert admin.patch("/api/environments/mine/config",
                       {"values": {"lycoris_config": str(shared)}}).status_code == 200
    researcher = ui.user(admin, "rita", ["researcher"])
    assert admin.put("/api/environments/mine/sharing", {"users": ["rita"]}).status_code in (200, 204)
    refused = researcher.put("/api/environments/mine/lycoris", {"config": {"algo": "lokr"}})
    assert refused.status_code == 409 and "outside its own folder" in refused.json["description"]
    assert json.loads(shared.read_text()) == {"algo": "locon"}
