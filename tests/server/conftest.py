"""Fixtures of the server tests: a migrated database (SQLite, or a private PostgreSQL server), the app, clients."""

from __future__ import annotations

import socket
import time
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


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def any_database(database_url: str | None, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An unmigrated database of each kind."""
    database = open_database(database_url, tmp_path)
    database.connect()
    yield database
    database.close()


class Clock:
    """A settable time source."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Client:
    """A TestClient that keeps the session cookie and sends the CSRF token, like the browser UI does."""

    def __init__(self, app: WebApp, remote_addr: str = "127.0.0.1") -> None:
        self.raw = falcon.testing.TestClient(app)
        self.remote_addr = remote_addr
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.api_key: str | None = None

    def request(self, method: str, path: str, *, csrf: bool = True, **kwargs: Any) -> falcon.testing.Result:
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.cookie:
            headers.setdefault("Cookie", f"st_session={self.cookie}")
        if self.api_key:
            headers.setdefault("X-API-Key", self.api_key)
        if csrf and self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return self.raw.simulate_request(method, path, headers=headers, remote_addr=self.remote_addr, **kwargs)

    def get(self, path: str, **kw: Any) -> falcon.testing.Result:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> falcon.testing.Result:
        return self.request("POST", path, json=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> falcon.testing.Result:
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> falcon.testing.Result:
        return self.request("DELETE", path, **kw)

    def login(self, username: str, password: str = PASSWORD, **extra: Any) -> falcon.testing.Result:
        result = self.post("/api/auth/login", {"username": username, "password": password, **extra})
        if result.status_code == 200:
            self.cookie = result.cookies["st_session"].value
            self.csrf = result.json["csrf_token"]
        return result


class Server:
    """An app on a fresh database (SQLite in ``root`` unless a URL is given) with a settable clock, and helpers to
    make users."""

    def __init__(self, root: Path, registry: Registry | None = None, database_url: str | None = None,
                 **settings: Any) -> None:
        self.clock = Clock()
        self.database = open_database(database_url, root)
        self.database.connect()
        migrate(self.database)
        self.registry = registry or Registry()
        self.settings = ServerSettings(bcrypt_rounds=4, **settings)
        self.app = create_app(database=self.database, registry=self.registry, workspace=Workspace(root),
                              settings=self.settings, clock=self.clock)

    def client(self, remote_addr: str = "127.0.0.1") -> Client:
        return Client(self.app, remote_addr)

    def setup_admin(self, username: str = "root") -> Client:
        """Create the first admin and return a client logged in as them."""
        client = self.client()
        result = client.post("/api/auth/setup/first-admin",
                             {"username": username, "email": f"{username}@example.org", "password": PASSWORD})
        assert result.status_code == 201, result.text
        assert client.login(username).status_code == 200
        return client

    def user(self, admin: Client, username: str, levels: list[str]) -> Client:
        """Create a user through the API and return a client logged in as them."""
        result = admin.post("/api/users", {"username": username, "email": f"{username}@example.org",
                                           "password": PASSWORD, "levels": levels})
        assert result.status_code == 201, result.text
        client = self.client()
        assert client.login(username).status_code == 200
        return client


#: In a module's ``pytestmark``: each of its tests runs twice, its ``server`` on SQLite and on the test run's
#: PostgreSQL (the core suites: setup, login, sessions, API keys, levels).
on_both_databases = pytest.mark.usefixtures("database_url")


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """An app on a fresh database: SQLite in the workspace, or each kind under ``on_both_databases``."""
    url = request.getfixturevalue("database_url") if "database_url" in request.fixturenames else None
    instance = Server(tmp_path, database_url=url)
    yield instance
    instance.database.close()


@pytest.fixture
def admin(server: Server) -> Client:
    """A client logged in as the first admin."""
    return server.setup_admin()
