"""Hub login: a per-user token checked with whoami against the environment's Hub (a loopback stub), stored
write-only, handed to the user's jobs, and used by the ``hf-hub`` publisher when ``HF_TOKEN`` is not set."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import HubState, fake_hub

from simpletuner.core.hub_tokens import TOKEN_FILE_ENV
from simpletuner.ui.jobs.launch import job_environment
from simpletuner.ui.jobs.models import Job
from simpletuner.ui.workflow.publisher_logins import token_path

from .conftest import Client, UiServer

WRITE_TOKEN = "hf_writeTokenOfRita0123456789"
READ_TOKEN = "hf_readOnlyToken0123456789"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubState]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with fake_hub() as stub:
        stub.tokens = {WRITE_TOKEN: ("rita-hf", "write"), READ_TOKEN: ("rita-hf", "read")}
        yield stub


@pytest.fixture
def env_on_stub(ui: UiServer, admin: Client, hub: HubState) -> str:
    assert admin.post("/api/environments", {"name": "alpha", "example": "flux-lora"}).status_code == 201
    saved = admin.patch("/api/environments/alpha/config", {"values": {"hub_endpoint": hub.base_url}})
    assert saved.status_code == 200, saved.text
    return "alpha"


def test_token_is_checked_against_the_configured_hub_and_never_returned(
        ui: UiServer, admin: Client, hub: HubState, env_on_stub: str) -> None:
    rita = ui.user(admin, "rita", ["researcher"])
    before = rita.get("/api/hub/login?environment=alpha")
    assert before.status_code == 200
    assert before.json == {"logged_in": False, "account": None, "endpoint": hub.base_url, "server_token": False}

    result = rita.put("/api/hub/login", {"token": WRITE_TOKEN, "environment": "alpha"})
    assert result.status_code == 200, result.text
    assert result.json["logged_in"] is True
    assert result.json["account"]["name"] == "rita-hf" and result.json["account"]["role"] == "write"
    assert result.json["account"]["endpoint"] == hub.base_url
    assert hub.auth_of("/api/whoami-v2") == [f"Bearer {WRITE_TOKEN}"]

    stored = token_path(ui.workspace, "hf-hub", 2)
    assert stored.read_text().strip() == WRITE_TOKEN
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    for answer in (result, rita.get("/api/hub/login?environment=alpha"), rita.get("/api/hub/login"),
                   admin.get("/api/audit"), rita.get("/config?env=alpha"), rita.get("/wizard")):
        assert WRITE_TOKEN not in answer.text

    # Per user: another researcher is not logged in by rita's token.
    remy = ui.user(admin, "remy", ["researcher"])
    assert remy.get("/api/hub/login").json["logged_in"] is False

    removed = rita.delete("/api/hub/login")
    assert removed.status_code == 200 and removed.json["removed"] is True and removed.json["logged_in"] is False
    assert not stored.exists()


@pytest.mark.parametrize(("token", "status", "words"), [
    ("hf_notKnownToTheHub0000", 422, "refused this token (401)"),
    (READ_TOKEN, 422, "can only read"),
    ("short", 400, "8-512 characters"),
    ("hf with spaces inside", 400, "no spaces"),
])
def test_refused_tokens_are_not_stored(ui: UiServer, admin: Client, hub: HubState, env_on_stub: str, token: str,
                                       status: int, words: str) -> None:
    result = admin.put("/api/hub/login", {"token": token, "environment": "alpha"})
    assert result.status_code == status, result.text
    assert words in result.json["description"]
    assert token not in result.text
    assert not token_path(ui.workspace, "hf-hub", 1).exists()
    assert admin.get("/api/hub/login").json["logged_in"] is False


def test_an_unreachable_hub_and_a_broken_config_are_explained(ui: UiServer, admin: Client, hub: HubState,
                                                              env_on_stub: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    admin.patch("/api/environments/alpha/config", {"values": {"hub_endpoint": closed}})
    result = admin.put("/api/hub/login", {"token": WRITE_TOKEN, "environment": "alpha"})
    assert result.status_code == 502 and f"could not reach the Hub at {closed}" in result.json["description"]
    missing = admin.put("/api/hub/login", {"token": WRITE_TOKEN, "environment": "nope"})
    assert missing.status_code == 404
    assert admin.put("/api/hub/login", {"token": WRITE_TOKEN, "extra": 1}).status_code == 400
    assert not token_path(ui.workspace, "hf-hub", 1).exists()


def test_viewers_cannot_store_a_token(ui: UiServer, admin: Client, hub: HubState) -> None:
    viewer = ui.user(admin, "vera", ["viewer"])
    assert viewer.put("/api/hub/login", {"token": WRITE_TOKEN}).status_code == 403
    assert viewer.get("/api/hub/login").status_code == 403
    assert hub.requests == []


def test_jobs_get_their_owners_token_file(ui: UiServer, admin: Client, hub: HubState, env_on_stub: str) -> None:
    assert admin.put("/api/hub/login", {"token": WRITE_TOKEN, "environment": "alpha"}).status_code == 200
    owned = job_environment(Job(id=7, owner=1, launcher_args=None, gpu_ids=None), ui.workspace, base={})
    assert owned[TOKEN_FILE_ENV] == str(token_path(ui.workspace, "hf-hub", 1))
    other = job_environment(Job(id=8, owner=2, launcher_args=None, gpu_ids=None), ui.workspace, base={})
    assert TOKEN_FILE_ENV not in other
    server_job = job_environment(Job(id=9, owner=None, launcher_args=None, gpu_ids=None), ui.workspace, base={})
    assert TOKEN_FILE_ENV not in server_job


def _checkpoint(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"weights")
    return folder


def test_publisher_uses_the_stored_token_unless_hf_token_is_set(hub: HubState, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from simpletuner.publishers.hf_hub import HubOptions
    from simpletuner.publishers.hf_hub.publisher import HubPublisher

    token_file = tmp_path / "token"
    token_file.write_text(WRITE_TOKEN + "\n")
    monkeypatch.setenv(TOKEN_FILE_ENV, str(token_file))
    options = HubOptions(hub_endpoint=hub.base_url, hub_upload_retries=0)
    HubPublisher(options).publish_checkpoint(_checkpoint(tmp_path), 3, {"hub_model_id": "rita-hf/cats"})
    assert set(hub.auth_of("/api/")) == {f"Bearer {WRITE_TOKEN}"}
    assert hub.repos["rita-hf/cats"]["visibility"] == "private"
    assert hub.commits[0].files == {"checkpoints/checkpoint-3/pytorch_lora_weights.safetensors": b"weights"}

    hub.auth_by_path.clear()
    monkeypatch.setenv("HF_TOKEN", "hf_operatorToken000000")
    public = HubOptions(hub_endpoint=hub.base_url, hub_upload_retries=0, hub_private=False)
    HubPublisher(public).publish_checkpoint(tmp_path / "checkpoint-3", 3, {"hub_model_id": "rita-hf/public"})
    assert set(hub.auth_of("/api/")) == {"Bearer hf_operatorToken000000"}
    assert hub.repos["rita-hf/public"]["visibility"] == "public"


def test_deleting_a_user_removes_their_token_sessions_and_keys(ui: UiServer, admin: Client, hub: HubState,
                                                                env_on_stub: str) -> None:
    from simpletuner.ui.auth.apikeys import create_api_key
    from simpletuner.ui.db.models import ApiKey, Session, User

    rita = ui.user(admin, "rita", ["researcher"])
    assert rita.put("/api/hub/login", {"token": WRITE_TOKEN, "environment": "alpha"}).status_code == 200
    rita_id = rita.get("/api/auth/me").json["id"]
    create_api_key(user=User.get_by_id(rita_id), name="ci", now=1.0)
    stored = token_path(ui.workspace, "hf-hub", rita_id)
    assert stored.is_file() and stored.with_suffix(".json").is_file()
    assert Session.select().where(Session.user == rita_id).count() == 1
    assert ApiKey.select().where(ApiKey.user == rita_id).count() == 1

    deleted = admin.delete(f"/api/users/{rita_id}")
    assert deleted.status_code == 200, deleted.text
    assert not stored.exists() and not stored.with_suffix(".json").exists()
    assert Session.select().where(Session.user == rita_id).count() == 0
    assert ApiKey.select().where(ApiKey.user == rita_id).count() == 0
    assert rita.get("/api/auth/me").status_code == 401
    event = admin.get("/api/audit").json["events"][0]
    assert (event["event"], event["target"]) == ("user_deleted", "rita")
    assert event["detail"] == {"tokens_removed": ["hf-hub"]}

    # SQLite gives the highest id again once its row is gone: the next account must start logged out.
    remy = ui.user(admin, "remy", ["researcher"])
    assert remy.get("/api/auth/me").json["id"] == rita_id
    assert remy.get("/api/hub/login?environment=alpha").json["logged_in"] is False


def test_a_token_that_cannot_be_removed_keeps_the_user(ui: UiServer, admin: Client, hub: HubState,
                                                        env_on_stub: str) -> None:
    rita = ui.user(admin, "rita", ["researcher"])
    assert rita.put("/api/hub/login", {"token": WRITE_TOKEN, "environment": "alpha"}).status_code == 200
    rita_id = rita.get("/api/auth/me").json["id"]
    stored = token_path(ui.workspace, "hf-hub", rita_id)
    stored.unlink()
    stored.mkdir()  # unlink() of a folder fails: the removal cannot happen
    refused = admin.delete(f"/api/users/{rita_id}")
    assert refused.status_code == 500 and "the user was not deleted" in refused.json["description"]
    assert rita.get("/api/auth/me").status_code == 200
    stored.rmdir()


def test_tokens_of_users_deleted_earlier_are_removed_at_start(tmp_path: Path) -> None:
    from simpletuner.core.workspace import Workspace
    from simpletuner.ui.serve import ServeOptions, prepare

    workspace = Workspace(tmp_path / "ws")
    folder = token_path(workspace, "hf-hub", 1).parent
    folder.mkdir(parents=True)
    for user_id in (1, 5):
        token_path(workspace, "hf-hub", user_id).write_text(WRITE_TOKEN)
        token_path(workspace, "hf-hub", user_id).with_suffix(".json").write_text("{}")
    (folder / "notes.token").write_text("not a user's")
    prepare(ServeOptions(), workspace)  # a fresh database: no user exists
    assert sorted(p.name for p in folder.iterdir()) == ["notes.token"]
    assert "Removed the stored Hub tokens of 2 deleted user(s) (ids [1, 5])" in \
        (workspace.root / "logs" / "server.log").read_text()


def test_tokens_stored_by_an_earlier_release_move_to_the_publishers_folder(tmp_path: Path) -> None:
    from simpletuner.core.workspace import Workspace
    from simpletuner.ui.db import bind_models, migrate, open_database
    from simpletuner.ui.serve import ServeOptions, prepare

    workspace = Workspace(tmp_path / "ws")
    database = open_database(None, workspace.root)
    with database:
        migrate(database)
        bind_models(database)
        from simpletuner.ui.auth.users import create_user

        kept = create_user(username="rita", email="rita@example.org", password=None, levels=["researcher"], now=1.0,
                           rounds=4)
    legacy = workspace.root / "secrets" / "hub"
    legacy.mkdir(parents=True)
    (legacy / f"{kept.id}.token").write_text(WRITE_TOKEN)
    (legacy / f"{kept.id}.json").write_text("{}")
    prepare(ServeOptions(), workspace)
    assert token_path(workspace, "hf-hub", kept.id).read_text() == WRITE_TOKEN and not legacy.exists()
