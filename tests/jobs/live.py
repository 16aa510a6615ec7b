"""A live ``simpletuner server`` for job tests: users with API keys, HTTP calls and a server-sent events reader."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIMPLETUNER_BIN = Path(sys.executable).parent / "simpletuner"
#: user -> level of the users every live server has
USERS = {"root": "admin", "lena": "lead", "rita": "researcher", "remy": "researcher", "vic": "viewer"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_users(workspace: Path, database_url: str | None = None) -> dict[str, str]:
    """Create the users of :data:`USERS` in the workspace's database (or the one at ``database_url``); returns an
    API key per user."""
    from simpletuner.ui.auth.apikeys import create_api_key
    from simpletuner.ui.auth.users import create_user
    from simpletuner.ui.db import bind_models, migrate, open_database

    database = open_database(database_url, workspace)
    database.connect()
    migrate(database)
    bind_models(database)
    keys = {}
    with database.atomic():
        for name, level in USERS.items():
            user = create_user(username=name, email=f"{name}@example.org", password=None, levels=[level],
                               now=time.time(), rounds=4)
            keys[name] = create_api_key(user=user, name="tests", now=time.time())[0]
    database.close()
    return keys


class LiveServer:
    """``simpletuner server`` on a loopback port."""

    def __init__(self, workspace: Path, keys: dict[str, str], env: dict[str, str], *args: str) -> None:
        self.workspace, self.keys, self.port = workspace, keys, free_port()
        self.env = {**os.environ, **env, "SIMPLETUNER_WORKSPACE": str(workspace)}
        self.log = (workspace / f"server-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [str(SIMPLETUNER_BIN), "server", "--port", str(self.port), "--workers", "2", "--stop-grace", "20",
             *args], stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (workspace / f"server-{self.port}.log").read_text()
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the server did not answer /health within 90 s")

    def call(self, method: str, path: str, body: Any = None, user: str | None = None) -> tuple[int, Any]:
        """One request as ``user`` (by API key); returns status and decoded JSON (or raw bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"X-API-Key": self.keys[user]} if user else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body), "application/json"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw

    def adopt(self, environment: str, owner: str) -> None:
        """As the admin, give an environment written on disk to ``owner`` (who may then start it)."""
        status, body = self.call("PUT", f"/api/environments/{environment}/owner", {"owner": owner}, "root")
        assert status == 200, body

    def allow_roots(self, *roots: Path) -> None:
        """As the admin, let configured paths reach these folders (e.g. where the test models live)."""
        status, body = self.call("PUT", "/api/settings/paths", {"roots": [str(r) for r in roots]}, "root")
        assert status == 200, body

    def read_events(self, user: str, until: Callable[[dict[str, Any]], bool], *, since: int | None = 0,
                    job: int | None = None, timeout: float = 180) -> list[dict[str, Any]]:
        """Follow ``/api/events`` (resuming after ``since`` with Last-Event-ID) until ``until(event)`` is true;
        returns the events read, each with its ``id``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"X-API-Key": self.keys[user], "Accept": "text/event-stream"}
        if since is not None:
            headers["Last-Event-ID"] = str(since)
        conn.request("GET", "/api/events" + (f"?job={job}" if job else ""), headers=headers)
        response = conn.getresponse()
        assert response.status == 200, response.read()
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        event_id: int | None = None
        try:
            while time.monotonic() < deadline:
                line = response.readline().decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    event = {**json.loads(line[6:]), "id": event_id}
                    events.append(event)
                    if until(event):
                        return events
            raise AssertionError(f"no awaited event within {timeout} s; got {[e['event'] for e in events]}")
        finally:
            conn.close()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server (running jobs go on); returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)
        self.log.close()
        return self.process.returncode


def supervisors(workspace: Path) -> list[int]:
    """Pids of the job supervisor processes of ``workspace``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"simpletuner.ui.jobs.supervisor" in command and str(workspace).encode() in command:
            found.append(int(entry.name))
    return found


def start_held(server: LiveServer, model: Path, environment: str = "held") -> int:
    """As rita, start a job of a held environment (written by ``write_env(..., held=True)``) on ``model``; returns
    its id once its process has started."""
    server.allow_roots(model)
    server.adopt(environment, "rita")
    status, body = server.call("POST", "/api/training/start", {"environment": environment}, "rita")
    assert status == 202, body
    job_id = body["job_id"]
    server.read_events("rita", lambda e: e["job_id"] == job_id and e["event"] == "job_started", job=job_id)
    return int(job_id)
