"""The dataset wizard's API with the huggingface backend: its options listed, a local dataset's rows previewed with
their captions, and a dataset_name outside the allowed folders refused before anything is read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from hf_helpers import rows, use_datasets_cache, write_parquet
from test_s3_wizard_api import PASSWORD, Admin

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def admin(tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Admin]:
    use_datasets_cache(monkeypatch, tmp_path / "hf-datasets-cache")
    server = Admin(tmp_path / "ws", s3_endpoint)
    yield server
    server.database.close()


def test_the_wizard_previews_rows_of_a_local_dataset(admin: Admin) -> None:
    backends = {b["name"]: b for b in admin.call("GET", "/api/datasets/backends").json["backends"]}
    options = {o["key"]: o for o in backends["huggingface"]["options"]}
    assert backends["huggingface"]["local_paths"] is False
    assert options["dataset_name"]["trust"] == "path" and options["caption_column"]["default"] == ["text"]

    write_parquet(admin.workspace.datasets_dir / "pets", rows(3))
    request = {"type": "huggingface", "options": {"dataset_name": "datasets/pets", "caption_column": "text",
                                                  "fallback_caption_column": "meta.alt"}}
    tested = admin.call("POST", "/api/datasets/remote/test", request)
    assert tested.status_code == 200, tested.text
    folder = admin.workspace.datasets_dir / "pets"
    assert tested.json["location"] == f"huggingface dataset {folder} (split train)"
    scan = admin.call("POST", "/api/datasets/remote/scan", {**request, "resolution": 128, "resolution_type": "pixel",
                                                             "caption_strategy": "huggingface"})
    assert scan.status_code == 200, scan.text
    assert (scan.json["images"], scan.json["usable"], scan.json["no_caption"]) == (3, 3, 0)
    assert {p["image"]: p["caption"] for p in scan.json["preview"]} == {
        "row-00000000.png": "a square number 0", "row-00000001.png": "a square number 1",
        "row-00000002.png": "nested caption 2"}


def test_a_dataset_outside_the_allowed_folders_is_refused(admin: Admin, tmp_path: Path) -> None:
    write_parquet(tmp_path / "elsewhere", rows(1))
    answer = admin.call("POST", "/api/datasets/remote/scan", {
        "type": "huggingface", "options": {"dataset_name": str(tmp_path / "elsewhere")}, "resolution": 128,
        "caption_strategy": "huggingface"})
    assert answer.status_code == 403
    assert "options.dataset_name" in answer.json["description"] and "outside the allowed roots" in \
        answer.json["description"]


class LoggedIn:
    """Another user of the admin's app, logged in with their own session."""

    def __init__(self, admin: Admin, username: str) -> None:
        self.client = admin.client
        login = self.client.simulate_request("POST", "/api/auth/login", remote_addr="127.0.0.1",
                                             json={"username": username, "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.headers = {"Cookie": f"st_session={login.cookies['st_session'].value}",
                        "X-CSRF-Token": login.json["csrf_token"]}

    def call(self, method: str, path: str, body: Any = None) -> falcon.testing.Result:
        return self.client.simulate_request(method, path, json=body, headers=self.headers, remote_addr="127.0.0.1")


def _store_login(workspace: Any, user_id: int, token: str, endpoint: str) -> None:
    """A stored Hub login, as the Hub login page leaves it (token file and what the Hub said about it)."""
    from simpletuner.ui.workflow.publisher_logins import token_path

    path = token_path(workspace, "hf-hub", user_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.with_suffix(".json").write_text(json.dumps({"name": f"user{user_id}", "endpoint": endpoint, "role": "read",
                                                     "saved_at": 0}))


def test_the_wizard_reads_a_private_hub_dataset_with_the_requesting_user_s_login(
        admin: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub_datasets import dataset_hub, use_hub

    from simpletuner.core.hub_tokens import JOB_ID_ENV, TOKEN_FILE_ENV

    for name in ("HF_TOKEN", TOKEN_FILE_ENV, JOB_ID_ENV):
        monkeypatch.delenv(name, raising=False)
    with dataset_hub() as hub:
        use_hub(monkeypatch, hub.base_url, tmp_path / "hub-cache")
        path = write_parquet(tmp_path / "secret", rows(2))
        hub.publish("owner/secret", {"data/train-00000-of-00001.parquet": path.read_bytes()})
        hub.private["owner/secret"] = "hf_rootsToken0123456789"
        admin.allow(hub.base_url)
        created = admin.call("POST", "/api/users", {"username": "rita", "email": "rita@example.org",
                                                    "password": PASSWORD, "levels": ["researcher"]})
        assert created.status_code == 201, created.text
        rita = LoggedIn(admin, "rita")
        request = {"type": "huggingface", "options": {"dataset_name": "owner/secret"}}

        refused = admin.call("POST", "/api/datasets/remote/test", request)  # no login stored yet
        assert refused.status_code == 422 and "no dataset 'owner/secret'" in refused.json["description"]
        _store_login(admin.workspace, 1, "hf_rootsToken0123456789", hub.base_url)
        tested = admin.call("POST", "/api/datasets/remote/test", request)
        assert tested.status_code == 200, tested.text
        scan = admin.call("POST", "/api/datasets/remote/scan", {**request, "resolution": 128,
                                                                 "caption_strategy": "huggingface"})
        assert scan.status_code == 200, scan.text
        assert scan.json["images"] == 2
        assert {auth for p, auth in hub.auth if "/datasets/" in p} >= {"Bearer hf_rootsToken0123456789"}

        hub.auth.clear()
        other = rita.call("POST", "/api/datasets/remote/test", request)  # root's login is root's alone
        assert other.status_code == 422
        assert {auth for p, auth in hub.auth if "/datasets/" in p} == {None}


def test_the_wizard_takes_the_huggingface_object_as_json_text(admin: Admin) -> None:
    write_parquet(admin.workspace.datasets_dir / "pets", rows(4))
    request = {"type": "huggingface", "options": {"dataset_name": "datasets/pets", "caption_column": "text",
                                                  "huggingface": '{"filter_func": {"min_height": 130}}'},
               "resolution": 64, "resolution_type": "pixel", "caption_strategy": "huggingface"}
    scan = admin.call("POST", "/api/datasets/remote/scan", request)
    assert scan.status_code == 200, scan.text
    assert scan.json["images"] == 2  # rows 1 and 3 are 144 pixels high, rows 0 and 2 only 128

    request["options"]["huggingface"] = '{"filter_func": {"min_height": 130}'
    broken = admin.call("POST", "/api/datasets/remote/scan", request)
    assert broken.status_code == 400 and "options.huggingface: not JSON" in broken.json["description"]
    request["options"]["huggingface"] = '{"filter_func": {"max_height": 130}}'
    unknown = admin.call("POST", "/api/datasets/remote/scan", request)
    assert unknown.status_code == 422
    assert "unknown filter 'max_height'; the filters are collection" in unknown.json["description"]
