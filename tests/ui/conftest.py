"""Fixtures of the web UI workflow tests: an app on a fresh workspace, clients that keep their session, users."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace
from simpletuner.ui.app import WebApp, create_app
from simpletuner.ui.db import open_database
from simpletuner.ui.db.migrations import migrate
from simpletuner.ui.settings import ServerSettings

PASSWORD = "correct horse battery"


class Client:
    """A TestClient keeping the session cookie and sending the CSRF token, as the browser UI does."""

    def __init__(self, app: WebApp) -> None:
        self.raw = falcon.testing.TestClient(app)
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(self, method: str, path: str, **kwargs: Any) -> falcon.testing.Result:
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.cookie:
            headers.setdefault("Cookie", f"st_session={self.cookie}")
        if self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return self.raw.simulate_request(method, path, headers=headers, remote_addr="127.0.0.1", **kwargs)

    def get(self, path: str, **kw: Any) -> falcon.testing.Result:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> falcon.testing.Result:
        return self.request("POST", path, json=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> falcon.testing.Result:
        return self.request("PATCH", path, json=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> falcon.testing.Result:
        return self.request("PUT", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> falcon.testing.Result:
        return self.request("DELETE", path, **kw)

    def login(self, username: str) -> None:
        result = self.post("/api/auth/login", {"username": username, "password": PASSWORD})
        assert result.status_code == 200, result.text
        self.cookie = result.cookies["st_session"].value
        self.csrf = result.json["csrf_token"]


class UiServer:
    """The app on a fresh workspace and database."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.workspace = Workspace(root)
        self.database = open_database(None, root)
        self.database.connect()
        migrate(self.database)
        self.registry = registry
        self.app = create_app(database=self.database, registry=registry, workspace=self.workspace,
                              settings=ServerSettings(bcrypt_rounds=4))

    def admin(self) -> Client:
        client = Client(self.app)
        result = client.post("/api/auth/setup/first-admin",
                             {"username": "root", "email": "root@example.org", "password": PASSWORD})
        assert result.status_code == 201, result.text
        client.login("root")
        return client

    def user(self, admin: Client, username: str, levels: list[str]) -> Client:
        result = admin.post("/api/users", {"username": username, "email": f"{username}@example.org",
                                           "password": PASSWORD, "levels": levels})
        assert result.status_code == 201, result.text
        client = Client(self.app)
        client.login(username)
        return client


@pytest.fixture(scope="session")
def installed_registry() -> Registry:
    """The installed plugins (families, trackers, ...), loaded once."""
    return Registry()


@pytest.fixture
def ui(tmp_path: Path, installed_registry: Registry) -> Iterator[UiServer]:
    server = UiServer(tmp_path / "ws", installed_registry)
    yield server
    server.database.close()


@pytest.fixture
def admin(ui: UiServer) -> Client:
    return ui.admin()
