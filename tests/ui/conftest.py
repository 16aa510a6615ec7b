"""Fixtures of the web UI workflow tests: an app on a fresh workspace, clients that keep their session, users."""

from __future__ import annotations

import contextlib
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


# Browser journeys: Debian chromium driven by Playwright, against ``simpletuner server`` on a loopback port.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="Debian chromium is not installed (apt-get install chromium)")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveUi:
    """``simpletuner server`` on a fresh workspace; its output goes to ``server.log`` in the workspace."""

    def __init__(self, workspace: Path, env: dict[str, str] | None = None, workers: int = 1) -> None:
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        workspace.mkdir(parents=True, exist_ok=True)
        self.workspace = workspace
        self.url = f"http://127.0.0.1:{free_port()}"
        full_env = {**os.environ, "SIMPLETUNER_WORKSPACE": str(workspace), **(env or {})}
        self.log = (workspace / "server.log").open("w")
        executable = Path(sys.executable).parent / "simpletuner"
        self.process = subprocess.Popen(
            [str(executable), "server", "--port", self.url.rsplit(":", 1)[1], "--workers", str(workers),
             "--stop-grace", "10"], stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, "the server exited: " + (workspace / "server.log").read_text()
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2)
                return
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server, then any job process it left running (jobs outlive a server by design)."""
        import signal

        from simpletuner.plugins.executors.processes import is_running, signal_tree
        from simpletuner.ui.jobs.models import Job, bind_job_models

        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()
        database = open_database(None, self.workspace)
        bind_job_models(database)
        with database:
            for job in Job.select().where(Job.pid.is_null(False)):
                if is_running(job.pid, job.process_start):
                    signal_tree(job.pid, signal.SIGKILL)


@pytest.fixture
def live_ui(tmp_path: Path) -> Iterator[LiveUi]:
    """``simpletuner server`` on a fresh workspace, stopped after the test."""
    server = LiveUi(tmp_path / "ws")
    yield server
    server.stop()


@contextlib.contextmanager
def launched_chromium():  # type: ignore[no-untyped-def]
    """Debian's Chromium driven by Playwright, closed on leaving."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def chromium_browser():  # type: ignore[no-untyped-def]
    with launched_chromium() as browser:
        yield browser


def first_admin(page, url: str, shot: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    """Create the first administrator on the setup page and log in as them."""
    page.goto(url + "/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=email]", "root@example.org")
    page.fill("input[name=password]", PASSWORD)
    if shot is not None:
        page.screenshot(path=shot, full_page=True)
    page.get_by_role("button", name="Create administrator").click()
    page.wait_for_url("**/login")
    log_in(page, url, "root")


def log_in(page, url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    """Log in on the login page."""
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(url + "/")


def csrf_headers(page) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Headers for a state-changing API call from the page's session (as the page's own scripts send)."""
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    return {"X-CSRF-Token": token or "", "Content-Type": "application/json"}
