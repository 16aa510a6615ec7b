"""Fixtures of the server tests: a migrated database (SQLite, or a private PostgreSQL server), the app, clients."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
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

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "correct horse battery"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL server for this test run (skipped, with the reason, where the binaries are absent)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install psycopg2-binary)")
    root = Path(tempfile.mkdtemp(prefix="st-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # initdb refuses root: run it as the postgres OS user
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        run_as = {"user": "postgres"}
    port = free_port()
    subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "st", "--no-sync"],
                   check=True, capture_output=True, **run_as)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"],
                   check=True, capture_output=True, **run_as)
    try:
        subprocess.run([str(PG_BIN.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "st",
                        "base"], check=True, capture_output=True, **run_as)
        yield f"postgresql://st@127.0.0.1:{port}/base"
    finally:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       **run_as)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_postgres(postgres_url: str) -> str:
    """A new, empty database on the test PostgreSQL server."""
    import psycopg2

    name = f"t{time.time_ns()}"
    conn = psycopg2.connect(postgres_url)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.close()
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An unmigrated database of each kind."""
    url = request.getfixturevalue("fresh_postgres") if request.param == "postgresql" else None
    database = open_database(url, tmp_path)
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
    """An app on a fresh SQLite database with a settable clock, and helpers to make users."""

    def __init__(self, root: Path, registry: Registry | None = None, **settings: Any) -> None:
        self.clock = Clock()
        self.database = open_database(None, root)
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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """An app on a fresh workspace database."""
    instance = Server(tmp_path)
    yield instance
    instance.database.close()


@pytest.fixture
def admin(server: Server) -> Client:
    """A client logged in as the first admin."""
    return server.setup_admin()
