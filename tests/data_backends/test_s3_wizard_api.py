"""The dataset wizard's API with the s3 backend: its options from the registry's metadata, a connection test, the
scan preview read from the bucket, and saving an s3 dataset whose secret is never sent back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from s3_helpers import upload_folder

from simpletuner.core.cli.demo_commands import make_demo_images
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace

PASSWORD = "correct horse battery"


class Admin:
    """A logged-in administrator of a fresh app, sending the session cookie and CSRF token like the browser, who
    allowed the loopback S3 server in the outbound policy (outbound requests reach public addresses only unless an
    admin allows more)."""

    def __init__(self, root: Path, s3_endpoint: str) -> None:
        from simpletuner.ui.app import create_app
        from simpletuner.ui.db import open_database
        from simpletuner.ui.db.migrations import migrate
        from simpletuner.ui.settings import ServerSettings

        self.workspace = Workspace(root)
        self.database = open_database(None, root)
        self.database.connect()
        migrate(self.database)
        app = create_app(database=self.database, registry=Registry(), workspace=self.workspace,
                         settings=ServerSettings(bcrypt_rounds=4))
        self.client = falcon.testing.TestClient(app)
        self.headers: dict[str, str] = {}
        assert self.call("POST", "/api/auth/setup/first-admin", {
            "username": "root", "email": "root@example.org", "password": PASSWORD}).status_code == 201
        login = self.call("POST", "/api/auth/login", {"username": "root", "password": PASSWORD})
        self.headers = {"Cookie": f"st_session={login.cookies['st_session'].value}",
                        "X-CSRF-Token": login.json["csrf_token"]}
        self.allow(s3_endpoint)

    def allow(self, *endpoints: str) -> None:
        """Allow these ``http://host:port`` endpoints in the outbound policy, as an admin would."""
        hosts = [*self.call("GET", "/api/settings/outbound").json["allowed_hosts"],
                 *(e.split("://", 1)[1] for e in endpoints)]
        assert self.call("PATCH", "/api/settings/outbound", {"allowed_hosts": hosts}).status_code == 200

    def call(self, method: str, path: str, body: Any = None) -> falcon.testing.Result:
        return self.client.simulate_request(method, path, json=body, headers=self.headers, remote_addr="127.0.0.1")


@pytest.fixture
def admin(tmp_path: Path, s3_endpoint: str) -> Iterator[Admin]:
    server = Admin(tmp_path / "ws", s3_endpoint)
    yield server
    server.database.close()


def test_backends_list_s3_with_its_options_metadata(admin: Admin) -> None:
    backends = {b["name"]: b for b in admin.call("GET", "/api/datasets/backends").json["backends"]}
    assert backends["local"]["local_paths"] is True and backends["local"]["options"] == []
    s3 = backends["s3"]
    assert s3["local_paths"] is False and s3["title"] == "S3-compatible storage"
    options = {o["key"]: o for o in s3["options"]}
    assert options["aws_secret_access_key"]["secret"] is True
    assert options["aws_bucket_name"]["label"] == "S3 bucket" and options["aws_bucket_name"]["nullable"] is True
    assert options["aws_max_pool_connections"]["default"] == 16 and options["aws_max_pool_connections"]["type"] == "int"


def test_connection_test_answers_ok_or_one_line(admin: Admin, s3_endpoint: str, bucket: str,
                                                closed_endpoint: str) -> None:
    secret = "wizard-secret-value-42"
    options = {"aws_bucket_name": bucket, "aws_endpoint_url": s3_endpoint, "aws_access_key_id": "AKIDWIZARD",
               "aws_secret_access_key": secret, "aws_region_name": ""}
    result = admin.call("POST", "/api/datasets/remote/test", {"type": "s3", "options": options, "path": "images"})
    assert result.status_code == 200, result.text
    assert result.json == {"ok": True, "location": f"s3://{bucket}/images at {s3_endpoint}"}

    admin.allow(closed_endpoint)
    cases = [
        ({**options, "aws_bucket_name": "not-there"}, "bucket 'not-there' does not exist"),
        ({**options, "aws_endpoint_url": closed_endpoint}, f"cannot reach {closed_endpoint}"),
        ({**options, "aws_bucket_name": ""}, "aws_bucket_name is not set"),
    ]
    for changed, message in cases:
        result = admin.call("POST", "/api/datasets/remote/test", {"type": "s3", "options": changed})
        assert result.status_code == 422 and message in result.json["description"], result.text
        assert secret not in result.text

    bad = [({"type": "s3", "options": {"aws_bucket": "x"}}, "options.aws_bucket: not an option of the s3 backend"),
           ({"type": "s3", "options": {"aws_max_pool_connections": "many"}},
            "options.aws_max_pool_connections: expected int"),
           ({"type": "local", "options": {}}, "'local' stores folders on this machine; use the folder browser"),
           ({"type": "ftp", "options": {}}, "unknown data backend 'ftp'; remote backends: huggingface, s3"),
           ({"type": "s3", "options": {}, "password": "x"}, "unknown field(s) password")]
    for body, message in bad:
        result = admin.call("POST", "/api/datasets/remote/test", body)
        assert result.status_code == 400 and message in result.json["description"], result.text


def test_the_environment_supplies_option_defaults(admin: Admin, s3_endpoint: str, bucket: str) -> None:
    env = admin.workspace.configs_dir / "pets"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({"model_family": "flux", "aws_endpoint_url": s3_endpoint}))
    body = {"type": "s3", "options": {"aws_bucket_name": bucket}}
    # an endpoint written on disk waits for approval: the environment's credentials are not sent there before
    assert admin.call("POST", "/api/datasets/remote/test", body | {"env": "pets"}).status_code == 409
    digest = admin.call("GET", "/api/environments/pets/access").json["digest"]
    assert admin.call("POST", "/api/environments/pets/approve", {"digest": digest}).status_code == 200
    assert admin.call("POST", "/api/datasets/remote/test", body | {"env": "pets"}).status_code == 200
    assert admin.call("GET", "/api/environments/pets/config").json["values"]["aws_endpoint_url"] == s3_endpoint


def test_scan_preview_reads_the_bucket(admin: Admin, s3_endpoint: str, bucket: str, s3_client: Any,
                                       tmp_path: Path) -> None:
    make_demo_images(tmp_path / "demo", 5)
    (tmp_path / "demo" / "demo-004.txt").unlink()
    upload_folder(s3_client, bucket, tmp_path / "demo", "pets/images")
    s3_client.put_object(Bucket=bucket, Key="pets/images/broken.png", Body=b"not a png")
    body = {"type": "s3", "options": {"aws_bucket_name": bucket, "aws_endpoint_url": s3_endpoint,
                                      "aws_data_prefix": "pets"}, "path": "images",
            "resolution": 128, "resolution_type": "pixel", "caption_strategy": "textfile"}
    result = admin.call("POST", "/api/datasets/remote/scan", body)
    assert result.status_code == 200, result.text
    scan = result.json
    assert (scan["images"], scan["scanned"], scan["unreadable"], scan["no_caption"]) == (6, 6, 1, 1)
    assert scan["no_caption_examples"] == ["demo-004.png"]
    assert scan["usable"] + scan["too_small"] == 4 and scan["usable"] == len(scan["preview"]) > 0
    first = scan["preview"][0]
    assert first["src"].startswith("data:image/jpeg;base64,") and first["caption"].startswith("a ")
    assert (tmp_path / "demo" / first["image"]).with_suffix(".txt").read_text() == first["caption"]

    bigger = admin.call("POST", "/api/datasets/remote/scan", body | {"resolution": 100000}).json
    assert bigger["usable"] == 0 and bigger["too_small"] == 5  # size is checked before the caption
    prompt = admin.call("POST", "/api/datasets/remote/scan",
                        body | {"caption_strategy": "instanceprompt", "instance_prompt": "sks shape"}).json
    assert prompt["no_caption"] == 0 and {p["caption"] for p in prompt["preview"]} == {"sks shape"}
    assert admin.call("POST", "/api/datasets/remote/scan", body | {"resolution": "big"}).status_code == 400


def test_saved_s3_dataset_never_echoes_its_secret(admin: Admin, s3_endpoint: str, bucket: str) -> None:
    env = admin.workspace.configs_dir / "pets"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({"model_family": "flux"}))
    secret = "stored-secret-value-99"
    entry = {"id": "pets", "type": "s3", "aws_bucket_name": bucket, "aws_endpoint_url": s3_endpoint,
             "aws_access_key_id": "AKIDSAVED", "aws_secret_access_key": secret, "cache_dir_vae": "cache/vae"}
    embeds = {"id": "text-embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/pets/text"}
    saved = admin.call("PUT", "/api/environments/pets/datasets", {"datasets": [entry, embeds]})
    assert saved.status_code == 200, saved.text  # an s3 image dataset needs no instance_data_dir
    assert json.loads((env / "multidatabackend.json").read_text())[0]["aws_secret_access_key"] == secret

    shown = admin.call("GET", "/api/environments/pets/datasets")
    assert secret not in shown.text
    assert shown.json["datasets"][0]["aws_secret_access_key"] is None
    assert shown.json["secrets_set"] == [{"id": "pets", "key": "aws_secret_access_key"}]

    # the wizard sends back what it was shown (a null secret) with another change: the stored secret stays
    again = [dict(shown.json["datasets"][0], cache_dir_vae="cache/vae2"), shown.json["datasets"][1]]
    assert admin.call("PUT", "/api/environments/pets/datasets", {"datasets": again}).status_code == 200
    stored = json.loads((env / "multidatabackend.json").read_text())[0]
    assert (stored["aws_secret_access_key"], stored["cache_dir_vae"]) == (secret, "cache/vae2")

    cleared = [dict(again[0], aws_secret_access_key=""), again[1]]
    assert admin.call("PUT", "/api/environments/pets/datasets", {"datasets": cleared}).status_code == 200
    assert json.loads((env / "multidatabackend.json").read_text())[0]["aws_secret_access_key"] == ""
    assert admin.call("GET", "/api/environments/pets/datasets").json["secrets_set"] == []
