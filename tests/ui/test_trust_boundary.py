"""A hostile researcher against every path that writes configuration: privileged options (commands, endpoints that
receive credentials) are refused or held for an admin's approval bound to their digest; paths stay inside the
workspace and the admin-allowed roots; environments belong to their owners."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import Client, UiServer

pytestmark = pytest.mark.timeout(120)

SCRIPT = "python -c \"open('/tmp/owned','w')\" {global_step}"


class Team:
    """An admin, a lead, two researchers and a viewer of one server."""

    def __init__(self, ui: UiServer) -> None:
        self.ui = ui
        self.admin = ui.admin()
        self.lena = ui.user(self.admin, "lena", ["lead"])
        self.rita = ui.user(self.admin, "rita", ["researcher"])
        self.remy = ui.user(self.admin, "remy", ["researcher"])
        self.vic = ui.user(self.admin, "vic", ["viewer"])

    def env_dir(self, name: str) -> Path:
        return self.ui.workspace.configs_dir / name

    def config(self, name: str) -> dict[str, Any]:
        return json.loads((self.env_dir(name) / "config.json").read_text())

    def create(self, client: Client, name: str) -> None:
        result = client.post("/api/environments", {"name": name, "example": "flux-lora"})
        assert result.status_code == 201, result.text


@pytest.fixture
def team(ui: UiServer) -> Team:
    return Team(ui)


def start(client: Client, name: str) -> Any:
    return client.post("/api/training/start", {"environment": name})


def test_a_researcher_cannot_set_change_or_unset_a_privileged_option(team: Team) -> None:
    team.create(team.rita, "mine")
    before = (team.env_dir("mine") / "config.json").read_bytes()
    for key, value in (("post_checkpoint_script", SCRIPT), ("post_upload_script", SCRIPT),
                       ("validation_external_script", SCRIPT), ("hub_endpoint", "https://evil.example"),
                       ("main_process_ip", "203.0.113.9")):
        saved = team.rita.patch("/api/environments/mine/config", {"values": {key: value}})
        assert saved.status_code == 422 and "config.trusted" in saved.json["field_errors"][key][0], saved.text
        checked = team.rita.post("/api/environments/mine/config/validate", {"values": {key: value}})
        assert checked.json["ok"] is False and key in checked.json["field_errors"]
    assert (team.env_dir("mine") / "config.json").read_bytes() == before

    # an admin sets one; the researcher may neither change nor remove it, but edits everything else
    assert team.admin.patch("/api/environments/mine/config",
                            {"values": {"post_checkpoint_script": "true {global_step}"}}).status_code == 200
    assert team.rita.patch("/api/environments/mine/config",
                           {"unset": ["post_checkpoint_script"]}).status_code == 422
    assert team.rita.patch("/api/environments/mine/config",
                           {"values": {"post_checkpoint_script": SCRIPT}}).status_code == 422
    assert team.rita.patch("/api/environments/mine/config", {"values": {"lora_rank": 8}}).status_code == 200
    assert team.config("mine")["post_checkpoint_script"] == "true {global_step}"
    # values an admin wrote are approved as written: the owner can start
    assert start(team.rita, "mine").status_code == 202


def test_datasets_endpoints_are_privileged_too(team: Team) -> None:
    team.create(team.rita, "mine")
    datasets = team.rita.get("/api/environments/mine/datasets").json["datasets"]
    bucket = {"id": "bucket", "type": "s3", "aws_bucket_name": "b", "aws_endpoint_url": "https://evil.example"}
    refused = team.rita.put("/api/environments/mine/datasets", {"datasets": [*datasets, bucket]})
    assert refused.status_code == 403 and "aws_endpoint_url" in refused.json["description"]
    assert team.admin.put("/api/environments/mine/datasets",
                          {"datasets": [*datasets, bucket]}).status_code == 200


def test_an_imported_archive_is_held_until_an_admin_approves_exactly_its_values(team: Team) -> None:
    team.create(team.admin, "template")
    team.admin.patch("/api/environments/template/config",
                     {"values": {"post_checkpoint_script": "true {global_step}"}})
    archive = team.rita.get("/api/environments/template/export").content
    evil = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(evil, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("config.json"):
                data = json.dumps({**json.loads(data), "post_checkpoint_script": SCRIPT}).encode()
            target.writestr(item, data)
    imported = team.rita.post("/api/environment-import?name=imported", body=evil.getvalue(),
                              headers={"Content-Type": "application/zip"})
    assert imported.status_code == 201, imported.text
    held = start(team.rita, "imported")
    assert held.status_code == 409 and held.json["pending"][0]["environment"] == "imported", held.text
    assert "config: post_checkpoint_script" in held.json["pending"][0]["keys"]

    access = team.rita.get("/api/environments/imported/access").json
    assert access["approved"] is False and access["privileged"]["config"]["post_checkpoint_script"] == SCRIPT
    assert team.rita.post("/api/environments/imported/approve", {"digest": access["digest"]}).status_code == 403
    # an approval is bound to the values reviewed: a stale digest is refused
    assert team.admin.post("/api/environments/imported/approve", {"digest": "0" * 64}).status_code == 409
    assert team.admin.post("/api/environments/imported/approve", {"digest": access["digest"]}).status_code == 200
    assert start(team.rita, "imported").status_code == 202

    # an import by an admin waits for approval too: nobody reviewed the archive's values
    again = team.admin.post("/api/environment-import?name=imported-2", body=evil.getvalue(),
                            headers={"Content-Type": "application/zip"})
    assert again.status_code == 201 and start(team.admin, "imported-2").status_code == 409


def test_an_edit_on_disk_after_approval_holds_the_environment_again(team: Team) -> None:
    team.create(team.rita, "mine")
    team.admin.patch("/api/environments/mine/config", {"values": {"post_checkpoint_script": "true {global_step}"}})
    config = team.config("mine") | {"post_checkpoint_script": SCRIPT}
    (team.env_dir("mine") / "config.json").write_text(json.dumps(config))
    held = start(team.rita, "mine")
    assert held.status_code == 409 and "approve" in held.json["problems"][0]


def test_the_default_environment_needs_a_lead_and_its_privileged_values_an_approval(team: Team) -> None:
    team.create(team.admin, "default")
    assert team.rita.patch("/api/environments/default/config",
                           {"values": {"lora_rank": 4}}).status_code == 403
    assert team.lena.patch("/api/environments/default/config", {"values": {"lora_rank": 4}}).status_code == 200
    assert team.lena.patch("/api/environments/default/config",
                           {"values": {"post_checkpoint_script": SCRIPT}}).status_code == 422
    # nobody below a lead creates, copies, renames or imports an environment named default
    assert team.rita.post("/api/environments", {"name": "default-2"}).status_code == 201
    assert team.rita.patch("/api/environments/default-2", {"name": "default"}).status_code in (403, 409)
    assert team.rita.delete("/api/environments/default").status_code == 403

    # a privileged value written into default on disk holds every environment that merges it
    team.create(team.rita, "merging")
    assert team.config("merging")["merge_environment_config"] is True
    (team.env_dir("default") / "config.json").write_text(json.dumps(team.config("default")
                                                                     | {"post_checkpoint_script": SCRIPT}))
    held = start(team.rita, "merging")
    assert held.status_code == 409 and held.json["pending"][0]["environment"] == "default"


def test_environments_belong_to_their_owner_until_shared(team: Team) -> None:
    team.create(team.rita, "ritas")
    assert team.remy.patch("/api/environments/ritas/config", {"values": {"lora_rank": 4}}).status_code == 403
    assert team.remy.patch("/api/environments/ritas", {"name": "remys"}).status_code == 403
    assert team.remy.delete("/api/environments/ritas").status_code == 403
    assert team.remy.post("/api/environments/ritas/presets", {"preset": "light"}).status_code == 403
    assert start(team.remy, "ritas").status_code == 403
    assert team.remy.put("/api/environments/ritas/sharing", {"users": ["remy"]}).status_code == 403
    assert team.vic.get("/api/environments/ritas/config").status_code == 200
    listed = {e["name"]: e for e in team.remy.get("/api/environments").json["environments"]}
    assert listed["ritas"]["owner"] == "rita" and listed["ritas"]["can_change"] is False

    # a copy is the copier's own
    assert team.remy.post("/api/environments/ritas/copy", {"name": "remys"}).status_code == 201
    assert team.remy.patch("/api/environments/remys/config", {"values": {"lora_rank": 4}}).status_code == 200

    assert team.rita.put("/api/environments/ritas/sharing", {"users": ["remy"]}).status_code == 200
    assert team.remy.patch("/api/environments/ritas/config", {"values": {"lora_rank": 4}}).status_code == 200
    assert start(team.remy, "ritas").status_code == 202
    # admins reach everything; an environment made on disk has no owner until an admin gives it one
    (team.env_dir("on-disk")).mkdir()
    (team.env_dir("on-disk") / "config.json").write_text(json.dumps(team.config("ritas")))
    assert team.rita.patch("/api/environments/on-disk/config", {"values": {"lora_rank": 4}}).status_code == 403
    assert team.admin.put("/api/environments/on-disk/owner", {"owner": "rita"}).status_code == 200
    assert team.rita.patch("/api/environments/on-disk/config", {"values": {"lora_rank": 4}}).status_code == 200


@pytest.mark.parametrize("value", ["/", "/etc", "../../..", "output/../../..", "~/.ssh", "%2e%2e/%2e%2e"])
def test_paths_outside_the_workspace_are_refused_when_saved(team: Team, value: str) -> None:
    team.create(team.rita, "mine")
    for key in ("output_dir", "data_backend_config", "init_lora", "pretrained_model_name_or_path"):
        saved = team.rita.patch("/api/environments/mine/config", {"values": {key: value}})
        if value == "%2e%2e/%2e%2e":  # not decoded: a folder literally named so, inside the workspace
            assert saved.status_code in (200, 422) and "outside" not in saved.text
            continue
        assert saved.status_code == 422, (key, saved.text)
        message = saved.json["field_errors"][key][0]
        assert "outside the allowed roots" in message and "resolves to" in message


def test_symlinks_are_followed_when_saved_and_again_at_start(team: Team, tmp_path: Path) -> None:
    team.create(team.rita, "mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    link = team.ui.workspace.root / "sneaky"
    link.symlink_to(outside)
    saved = team.rita.patch("/api/environments/mine/config", {"values": {"output_dir": "sneaky/out"}})
    assert saved.status_code == 422 and str(outside) in saved.json["field_errors"]["output_dir"][0]

    # planted after saving: the datasets folder becomes a link to somewhere else
    assert team.rita.patch("/api/environments/mine/config", {"values": {"output_dir": "output/mine"}}).status_code \
        == 200
    images = team.ui.workspace.datasets_dir / "mine"
    images.rmdir()
    images.symlink_to(outside)
    refused = start(team.rita, "mine")
    assert refused.status_code == 422 and any("instance_data_dir" in p for p in refused.json["problems"])

    # an admin allows the folder as a root: the same environment may start
    assert team.admin.put("/api/settings/paths", {"roots": [str(outside)]}).status_code == 200
    assert start(team.rita, "mine").status_code == 202


def test_the_servers_private_files_are_out_of_reach_and_datasets_files_stay_confined(team: Team) -> None:
    team.create(team.rita, "mine")
    for value in ("simpletuner.db", "logs/server.log", "secrets/hf-hub/1.token", "workspace.json"):
        saved = team.rita.patch("/api/environments/mine/config", {"values": {"data_backend_config": value}})
        assert saved.status_code == 422 and "private" in saved.json["field_errors"]["data_backend_config"][0]
    # a datasets file pointed outside on disk is neither read nor written
    config = team.config("mine") | {"data_backend_config": "/etc/passwd"}
    (team.env_dir("mine") / "config.json").write_text(json.dumps(config))
    assert team.vic.get("/api/environments/mine/datasets").status_code == 403
    assert team.rita.put("/api/environments/mine/datasets", {"datasets": []}).status_code == 403


def test_admin_roots_must_be_existing_absolute_folders(team: Team, tmp_path: Path) -> None:
    for roots, fragment in (("/data", "list"), (["relative"], "absolute"), (["/"], "filesystem root"),
                            ([str(tmp_path / "missing")], "existing folder")):
        refused = team.admin.put("/api/settings/paths", {"roots": roots})
        assert refused.status_code == 400 and fragment in refused.json["description"], refused.text
    assert team.rita.put("/api/settings/paths", {"roots": [str(tmp_path)]}).status_code == 403
    assert team.admin.put("/api/settings/paths", {"roots": [str(tmp_path)]}).status_code == 200
    assert str(tmp_path.resolve()) in team.admin.get("/api/settings/paths").json["effective_roots"]


def test_exports_leave_secrets_out(team: Team) -> None:
    team.create(team.rita, "mine")
    datasets = team.rita.get("/api/environments/mine/datasets").json["datasets"]
    bucket = {"id": "bucket", "type": "s3", "aws_bucket_name": "b", "aws_secret_access_key": "s3cr3t-key"}
    assert team.rita.put("/api/environments/mine/datasets", {"datasets": [*datasets, bucket]}).status_code == 200
    archive = team.vic.get("/api/environments/mine/export").content
    with zipfile.ZipFile(io.BytesIO(archive)) as exported:
        text = "".join(exported.read(n).decode() for n in exported.namelist())
    assert "s3cr3t" not in text and "aws_bucket_name" in text


def test_a_token_is_never_sent_to_an_unapproved_hub_endpoint(team: Team) -> None:
    import http.server
    import threading

    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        team.create(team.rita, "mine")
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        (team.env_dir("mine") / "config.json").write_text(json.dumps(team.config("mine")
                                                                     | {"hub_endpoint": endpoint}))
        refused = team.admin.put("/api/hub/login", {"token": "hf_admin_token_123", "environment": "mine"})
        assert refused.status_code == 409 and "approval" in refused.json["description"]
        assert seen == []
    finally:
        server.shutdown()
        server.server_close()
