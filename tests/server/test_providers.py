"""Login providers: discovered through the registry, configured with write-only secrets, offered on the login page,
external users provisioned and synced, redirect flows, test connection, and the Plugins API."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import attrs
import pytest

from simpletuner.core.hookspecs import RegisterAuthProvider, hookimpl
from simpletuner.core.interfaces import (
    AccountStore,
    ExternalIdentity,
    PasswordAuthProvider,
    RedirectAuthProvider,
    RedirectStart,
)
from simpletuner.core.options import option
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import AuthProviderSpec
from simpletuner.ui.db.models import AuthProviderConfig, User

from .conftest import Client, Server

DIRECTORY = {"ada": ("ada-pass-123", ("ml-team",)), "bob": ("bob-pass-123", ("admins",)),
             "eve": ("eve-pass-123", ("nobody",))}


@attrs.define
class DirOptions:
    dir_url: str = option(help="Where the directory lives", section="environment")
    dir_bind_password: str | None = option(None, help="Bind password", section="environment", secret=True)
    dir_timeout: int = option(5, help="Seconds", section="environment", minimum=1, maximum=60)


class DirProvider(PasswordAuthProvider):
    def __init__(self, options: DirOptions, accounts: AccountStore) -> None:
        self.options = options

    def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        entry = DIRECTORY.get(username)
        if entry is None or entry[0] != password:
            return None
        return ExternalIdentity(username, email=f"{username}@corp.example", groups=entry[1])

    def test_connection(self) -> str:
        if self.options.dir_bind_password != "s3cret":
            raise ConnectionError(f"bind to {self.options.dir_url} refused")
        return f"bound to {self.options.dir_url}"


class SsoProvider(RedirectAuthProvider):
    def __init__(self, options: object, accounts: AccountStore) -> None:
        pass

    def begin(self, redirect_uri: str) -> RedirectStart:
        return RedirectStart(f"https://idp.example/authorize?redirect_uri={redirect_uri}&state=xyz", {"state": "xyz"})

    def complete(self, params: Mapping[str, str], state: Mapping[str, str]) -> ExternalIdentity | None:
        if params.get("state") != state["state"]:
            return None
        return ExternalIdentity(params["user"], groups=("ml-team",))


class FakePlugins:
    @hookimpl
    def register_auth_providers(self, register: RegisterAuthProvider) -> None:
        register(AuthProviderSpec(name="fakedir", title="Fake directory", description="test", style="password",
                                  options=DirOptions, factory=DirProvider))
        register(AuthProviderSpec(name="fakesso", title="Fake SSO", description="test", style="redirect",
                                  factory=SsoProvider))


@pytest.fixture
def sso_server(tmp_path: Path) -> Server:
    registry = Registry()
    registry.register_plugin(FakePlugins(), "fake-auth")
    return Server(tmp_path, registry=registry)


@pytest.fixture
def sso_admin(sso_server: Server) -> Client:
    return sso_server.setup_admin()


def add_directory(admin: Client) -> dict:
    result = admin.post("/api/auth-providers", {
        "name": "corp", "type": "fakedir", "title": "Corp directory",
        "options": {"dir_url": "ldap://dir.example", "dir_bind_password": "s3cret", "dir_timeout": "10"},
        "group_levels": {"ml-team": "researcher", "admins": "admin"},
    })
    assert result.status_code == 201, result.text
    return result.json["provider"]


def test_types_come_from_the_registry_with_option_metadata(sso_server: Server, sso_admin: Client) -> None:
    types = {t["name"]: t for t in sso_admin.get("/api/auth-provider-types").json["types"]}
    assert {"local", "fakedir", "fakesso"} <= set(types)
    fields = {f["key"]: f for f in types["fakedir"]["options"]}
    assert fields["dir_bind_password"]["secret"] and fields["dir_timeout"]["maximum"] == 60
    page = sso_admin.get("/admin/providers").text
    assert 'name="options.dir_url"' in page and 'type="password" name="options.dir_bind_password"' in page


def test_secrets_are_write_only(sso_server: Server, sso_admin: Client) -> None:
    provider = add_directory(sso_admin)
    assert provider["options"] == {"dir_url": "ldap://dir.example", "dir_timeout": 10}
    assert provider["secrets_set"] == ["dir_bind_password"]
    for text in (sso_admin.get("/api/auth-providers").text, sso_admin.get(f"/api/auth-providers/{provider['id']}").text,
                 sso_admin.get("/admin/providers").text, sso_admin.get("/api/audit").text):
        assert "s3cret" not in text
    # Saving without the secret keeps it; the test connection uses it.
    assert sso_admin.patch(f"/api/auth-providers/{provider['id']}", {"options": {
        "dir_url": "ldap://dir2.example"}}).status_code == 200
    tested = sso_admin.post(f"/api/auth-providers/{provider['id']}/test").json
    assert tested == {"ok": True, "message": "bound to ldap://dir2.example"}
    sso_admin.patch(f"/api/auth-providers/{provider['id']}", {"options": {"dir_url": "ldap://dir2.example",
                                                                          "dir_bind_password": "wrong"}})
    failed = sso_admin.post(f"/api/auth-providers/{provider['id']}/test").json
    assert failed["ok"] is False and "refused" in failed["message"]


def test_options_are_validated(sso_admin: Client) -> None:
    bad = sso_admin.post("/api/auth-providers", {"name": "corp", "type": "fakedir", "options": {
        "dir_url": "x", "dir_timeout": 999, "dir_urll": "y"}})
    assert bad.status_code == 400
    assert "dir_timeout" in bad.json["description"] and "did you mean 'dir_url'" in bad.json["description"]
    missing = sso_admin.post("/api/auth-providers", {"name": "corp", "type": "fakedir", "options": {}})
    assert missing.status_code == 400 and "dir_url" in missing.json["description"]
    assert sso_admin.post("/api/auth-providers", {"name": "x", "type": "nosuch"}).status_code == 400
    assert AuthProviderConfig.select().count() == 1


def test_external_users_created_mapped_and_synced(sso_server: Server, sso_admin: Client) -> None:
    add_directory(sso_admin)
    offered = sso_server.client().get("/api/auth/providers").json["providers"]
    assert [p["name"] for p in offered] == ["local", "corp"]
    assert "Corp directory" in sso_server.client().get("/login").text
    ada = sso_server.client()
    assert ada.login("ada", "ada-pass-123", provider="corp").status_code == 200
    assert ada.get("/api/auth/me").json["levels"] == ["researcher"]
    user = User.get(User.username == "ada")
    assert user.auth_source == "corp" and user.password_hash is None and user.email == "ada@corp.example"
    assert ada.login("ada", "wrong", provider="corp").status_code == 401
    # The mapping changes: the next login syncs the levels.
    corp = AuthProviderConfig.get(AuthProviderConfig.name == "corp")
    sso_admin.patch(f"/api/auth-providers/{corp.id}", {"group_levels": {"ml-team": "lead"}})
    assert ada.login("ada", "ada-pass-123", provider="corp").status_code == 200
    assert ada.get("/api/auth/me").json["levels"] == ["lead"]
    assert User.select().where(User.username == "ada").count() == 1
    # Unmapped groups are refused unless there is a default level.
    assert sso_server.client().login("eve", "eve-pass-123", provider="corp").status_code == 403
    sso_admin.patch(f"/api/auth-providers/{corp.id}", {"default_level": "viewer"})
    assert sso_server.client().login("eve", "eve-pass-123", provider="corp").status_code == 200
    # A directory user cannot take over a local account of the same name.
    sso_admin.post("/api/users", {"username": "bob", "email": "b@example.org", "password": "local password 1",
                                  "levels": ["viewer"]})
    assert sso_server.client().login("bob", "bob-pass-123", provider="corp").status_code == 403


def test_redirect_flow(sso_server: Server, sso_admin: Client) -> None:
    created = sso_admin.post("/api/auth-providers", {"name": "sso", "type": "fakesso", "title": "Company SSO",
                                                     "group_levels": {"ml-team": "researcher"}})
    assert created.status_code == 201
    assert "/api/auth/providers/sso/begin" in sso_server.client().get("/login").text
    browser = sso_server.client()
    begin = browser.get("/api/auth/providers/sso/begin", params={"next": "/profile"})
    assert begin.status_code == 303
    target = urlparse(begin.headers["location"])
    assert target.netloc == "idp.example"
    assert parse_qs(target.query)["redirect_uri"] == ["http://falconframework.org/api/auth/providers/sso/callback"]
    login_cookie = begin.cookies["st_login"].value
    headers = {"Cookie": f"st_login={login_cookie}"}
    forged = browser.get("/api/auth/providers/sso/callback", params={"state": "other", "user": "ada"},
                         headers=headers)
    assert forged.status_code == 401
    # The pending login was used up by the failed attempt: a replay is refused.
    begin = browser.get("/api/auth/providers/sso/begin", params={"next": "/profile"})
    headers = {"Cookie": f"st_login={begin.cookies['st_login'].value}"}
    done = browser.get("/api/auth/providers/sso/callback", params={"state": "xyz", "user": "ada"}, headers=headers)
    assert done.status_code == 303 and done.headers["location"] == "/profile"
    browser.cookie = done.cookies["st_session"].value
    assert browser.get("/api/auth/me").json["username"] == "ada"
    replay = browser.get("/api/auth/providers/sso/callback", params={"state": "xyz", "user": "ada"}, headers=headers)
    assert replay.status_code == 400
    # Password login is refused for a redirect provider, and vice versa.
    assert browser.post("/api/auth/login", {"username": "ada", "password": "x", "provider": "sso"}).status_code == 400
    assert browser.get("/api/auth/providers/local/begin").status_code == 400


def test_local_provider_cannot_be_disabled_or_removed(server: Server, admin: Client) -> None:
    local = AuthProviderConfig.get(AuthProviderConfig.name == "local")
    assert admin.patch(f"/api/auth-providers/{local.id}", {"enabled": False}).status_code == 409
    assert admin.delete(f"/api/auth-providers/{local.id}").status_code == 409
    assert admin.post(f"/api/auth-providers/{local.id}/test").json == {
        "ok": True, "message": "1 active local account(s) with a password"}


def test_plugins_api_lists_kinds_and_failures(tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def register_auth_providers(self, register: RegisterAuthProvider) -> None:
            raise RuntimeError("broken on purpose")

    registry = Registry()
    registry.register_plugin(Broken(), "broken-auth")
    server = Server(tmp_path, registry=registry)
    admin = server.setup_admin()
    plugins = admin.get("/api/plugins").json
    assert "local" in [row["name"] for row in plugins["kinds"]["auth_provider"]]
    assert any(row["name"] == "broken-auth" and "broken on purpose" in row["error"] for row in plugins["failed"])
    assert "broken on purpose" in admin.get("/plugins").text
