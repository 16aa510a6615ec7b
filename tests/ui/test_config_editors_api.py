"""What the Configuration page's editors read and write over HTTP: options name their structured editor and carry
readable labels; a prompt library's problems are reported beside the option with the prompt named, and a refused
save writes nothing; the LyCORIS view carries its form and a check that writes nothing (editors only); privileged
options carry their approval state from the approval records, for admins and researchers alike, and only a trusted
user approves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Client, UiServer

pytestmark = pytest.mark.timeout(120)
COMMAND = "python eval.py {local_checkpoint_path} {global_step}"


def options_of(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {option["key"]: option for section in view["sections"] for option in section["options"]}


def config_path(ui: UiServer, env: str) -> Path:
    return ui.workspace.configs_dir / env / "config.json"


def set_on_disk(ui: UiServer, env: str, **values: Any) -> None:
    path = config_path(ui, env)
    path.write_text(json.dumps(json.loads(path.read_text()) | values))


def test_options_name_their_editor_and_read_well(ui: UiServer, admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "lib", "example": "flux-lora"}).status_code == 201
    options = options_of(admin.get("/api/environments/lib/config").json)
    assert options["validation_prompts"]["editor"] == "prompt-library"
    assert options["validation_prompts"]["label"] == "Validation prompt library"
    assert options["lycoris_config"]["editor"] == "lycoris"
    assert options["lora_rank"]["editor"] is None and options["lora_rank"]["label"] == "LoRA rank"
    assert options["lr_scheduler"]["label"] == "Learning-rate schedule"
    assert options["flux_t5_max_tokens"]["label"] == "Flux T5 max tokens"


def test_prompt_library_problems_name_the_prompt_and_save_nothing(ui: UiServer, admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "lib", "example": "flux-lora"}).status_code == 201
    library = {"cat": "a photo of a cat", "dog": {"prompt": "a dog", "seed": 7}}
    assert admin.patch("/api/environments/lib/config", {"values": {"validation_prompts": library}}).status_code == 200
    before = config_path(ui, "lib").read_bytes()

    checked = admin.post("/api/environments/lib/config/validate",
                         {"values": {"validation_prompts": {**library, "bird": {"prompt": "a bird", "sead": 3}}}})
    assert checked.json["field_errors"]["validation_prompts"] == [
        "bird: unknown field(s) sead; known: guidance, negative_prompt, prompt, resolution, seed, steps"]
    refused = admin.patch("/api/environments/lib/config", {"values": {"validation_prompts": {**library, "bird": ""}}})
    assert refused.status_code == 422
    assert refused.json["field_errors"]["validation_prompts"] == ["bird: the prompt is empty"]
    assert config_path(ui, "lib").read_bytes() == before
    assert admin.get("/api/environments/lib/config").json["values"]["validation_prompts"] == library


def test_the_lycoris_view_has_its_form_and_a_check_that_writes_nothing(ui: UiServer, admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "lyco", "example": "flux-lora"}).status_code == 201
    view = admin.get("/api/environments/lyco/lycoris").json
    assert view["shown_file"] == "configs/lyco/lycoris_config.json"
    assert view["file"] == str(ui.workspace.configs_dir / "lyco" / "lycoris_config.json")
    fields = {field["key"]: field for field in view["form"]}
    assert fields["algo"]["required"] and "lokr" in fields["algo"]["choices"]
    assert fields["factor"]["algorithms"] == ["lokr"]
    assert fields["apply_preset.target_module"]["kind"] == "names"

    good = {"algo": "lokr", "factor": 8, "dropout": 0.1, "apply_preset": {"target_module": ["FluxTransformerBlock"]}}
    assert admin.post("/api/environments/lyco/lycoris/validate", {"config": good}).json == {"ok": True, "errors": []}
    bad = admin.post("/api/environments/lyco/lycoris/validate", {"config": {**good, "factor": 0, "linear_dim": "x"}})
    assert bad.status_code == 200 and bad.json["ok"] is False
    assert "lycoris_config.json: factor: must be -1 (automatic) or at least 1" in bad.json["errors"]
    assert "lycoris_config.json: linear_dim: expected a whole number, got 'x'" in bad.json["errors"]
    assert not (ui.workspace.configs_dir / "lyco" / "lycoris_config.json").exists()
    shapeless = admin.post("/api/environments/lyco/lycoris/validate", {"config": ["lokr"]})
    assert shapeless.status_code == 400 and "at least algo" in shapeless.json["description"]
    assert admin.post("/api/environments/lyco/lycoris/validate", {"config": good, "write": True}).status_code == 400
    assert admin.post("/api/environments/nowhere/lycoris/validate", {"config": good}).status_code == 404

    viewer = ui.user(admin, "vic", ["viewer"])
    assert viewer.get("/api/environments/lyco/lycoris").status_code == 200
    assert viewer.post("/api/environments/lyco/lycoris/validate", {"config": good}).status_code == 403

    # a file that is not an object of settings is reported, never shown as "none yet" to be written over
    stored = ui.workspace.configs_dir / "lyco" / "lycoris_config.json"
    stored.write_text('["lokr", 8]')
    broken = admin.get("/api/environments/lyco/lycoris")
    assert broken.status_code == 422 and "holds a JSON list, not an object" in broken.json["description"]
    assert stored.read_text() == '["lokr", 8]'


def test_privileged_options_carry_their_approval_state(ui: UiServer, admin: Client) -> None:
    rita = ui.user(admin, "rita", ["researcher"])
    assert rita.post("/api/environments", {"name": "hers", "example": "flux-lora"}).status_code == 201
    fresh = rita.get("/api/environments/hers/config").json["approvals"]
    assert fresh["options"]["post_checkpoint_script"] == {"state": "unset", "environment": None}
    assert fresh["on_change"] == "refused" and fresh["can_approve"] is False
    assert admin.get("/api/environments/hers/config").json["approvals"]["on_change"] == "approved"

    set_on_disk(ui, "hers", post_checkpoint_script=COMMAND)  # written behind the server's back
    for client in (rita, admin):
        approvals = client.get("/api/environments/hers/config").json["approvals"]
        assert approvals["options"]["post_checkpoint_script"] == {"state": "waiting", "environment": "hers"}
        assert approvals["options"]["post_upload_script"]["state"] == "unset"
        [env] = approvals["environments"]
        assert env["state"] == "waiting" and env["keys"] == ["config: post_checkpoint_script"]
    assert approvals["on_change"] == "waiting" and approvals["can_approve"] is True  # the admin's view

    digest = env["digest"]
    refused = rita.post("/api/environments/hers/approve", {"digest": digest})
    assert refused.status_code == 403
    assert rita.get("/api/environments/hers/config").json["approvals"]["environments"][0]["state"] == "waiting"
    assert admin.post("/api/environments/hers/approve", {"digest": digest}).status_code == 200
    approvals = rita.get("/api/environments/hers/config").json["approvals"]
    assert approvals["options"]["post_checkpoint_script"]["state"] == "approved"
    assert approvals["environments"][0]["approved_by"] == "root"

    set_on_disk(ui, "hers", post_checkpoint_script=COMMAND + " --again")  # a change after the approval waits again
    again = admin.get("/api/environments/hers/config").json["approvals"]
    assert again["options"]["post_checkpoint_script"]["state"] == "waiting"
    assert again["environments"][0]["approved_by"] is None


def test_a_value_taken_from_default_shows_defaults_approval(ui: UiServer, admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "default"}).status_code == 201
    assert admin.post("/api/environments", {"name": "team", "merge_defaults": True}).status_code == 201
    set_on_disk(ui, "default", post_upload_script="python notify.py {remote_checkpoint_path}")
    approvals = admin.get("/api/environments/team/config").json["approvals"]
    assert approvals["options"]["post_upload_script"] == {"state": "waiting", "environment": "default"}
    assert [env["name"] for env in approvals["environments"]] == ["default", "team"]
    assert approvals["environments"][1]["state"] == "unset"
