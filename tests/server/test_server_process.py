"""``simpletuner server`` as a real process on a loopback port, over HTTP and HTTPS."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PASSWORD, free_port

SIMPLETUNER_BIN = Path(sys.executable).parent / "simpletuner"
HEAVY = ("torch", "diffusers", "transformers", "peft")


class Running:
    def __init__(self, process: subprocess.Popen[str], port: int, tls: bool, workspace: Path) -> None:
        self.process, self.port, self.tls, self.workspace = process, port, tls, workspace

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.workspace / "tls" / "server.crt"))
            conn: http.client.HTTPConnection = http.client.HTTPSConnection("localhost", self.port, context=context,
                                                                           timeout=20)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        data = json.dumps(body) if body is not None else None
        all_headers = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers={**all_headers, **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode()
        headers = {k.lower(): v for k, v in response.getheaders()}
        # a login sets the session and known-device cookies: keep the session's
        headers["set-cookie"] = next((c for c in response.headers.get_all("Set-Cookie") or []
                                      if c.startswith("st_session=")), headers.get("set-cookie", ""))
        return response.status, headers, payload


def start(workspace: Path, *args: str) -> Running:
    port = free_port()
    env = {**os.environ, "SIMPLETUNER_WORKSPACE": str(workspace)}
    process = subprocess.Popen([str(SIMPLETUNER_BIN), "server", "--port", str(port), "--workers", "1", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    running = Running(process, port, "--ssl" in args, workspace)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if running.request("GET", "/health")[0] == 200:
                return running
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer /health within 60 s")


def stop(running: Running, sig: int = signal.SIGTERM) -> tuple[int, str]:
    running.process.send_signal(sig)
    output, _ = running.process.communicate(timeout=30)
    return running.process.returncode, output


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Running]:
    running = start(tmp_path / "ws")
    yield running
    if running.process.poll() is None:
        stop(running)


def process_tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *[int(c) for c in children]]


def test_http_server_end_to_end(served: Running) -> None:
    status, headers, _ = served.request("GET", "/")
    assert status == 303 and headers["location"] == "/setup"
    assert served.request("GET", "/api/training/status")[0] == 401
    status, _, body = served.request("POST", "/api/auth/setup/first-admin",
                                     {"username": "root", "email": "root@example.org", "password": PASSWORD})
    assert status == 201, body
    status, headers, body = served.request("POST", "/api/auth/login", {"username": "root", "password": PASSWORD})
    assert status == 200 and "HttpOnly" in headers["set-cookie"] and "Secure" not in headers["set-cookie"]
    cookie = headers["set-cookie"].split(";")[0]
    status, _, body = served.request("POST", "/api/apikeys", {"name": "ci"},
                                     headers={"Cookie": cookie, "X-CSRF-Token": body["csrf_token"]})
    assert status == 201
    status, _, body = served.request("GET", "/api/training/status", headers={"X-API-Key": body["key"]})
    assert status == 200 and body["status"] == "idle"
    # Neither the master nor the workers loaded the training stack.
    for pid in process_tree(served.process.pid):
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert not any(f"/site-packages/{name}/" in maps for name in HEAVY), pid
    code, output = stop(served)
    assert code == 0, output
    assert "Setup token (needed from other machines):" in output


def test_sigint_stops_cleanly(served: Running) -> None:
    code, _ = stop(served, signal.SIGINT)
    assert code == 0


def test_https_with_a_self_signed_pair_made_once(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    running = start(workspace, "--ssl")
    key = workspace / "tls" / "server.key"
    cert_bytes = (workspace / "tls" / "server.crt").read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_bytes)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    status, _, _ = running.request("GET", "/health")
    assert status == 200
    running.request("POST", "/api/auth/setup/first-admin",
                    {"username": "root", "email": "root@example.org", "password": PASSWORD})
    status, headers, _ = running.request("POST", "/api/auth/login", {"username": "root", "password": PASSWORD})
    assert status == 200 and "Secure" in headers["set-cookie"]
    assert stop(running)[0] == 0
    again = start(workspace, "--ssl")  # reuses the pair
    assert (workspace / "tls" / "server.crt").read_bytes() == cert_bytes
    assert stop(again)[0] == 0


def test_cli_provisioning_and_flag_errors(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    made = run_cli("users", "create", "--username", "ops", "--email", "ops@example.org", "--admin",
                   input=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    weak = run_cli("users", "create", "--username", "x2", "--email", "x@example.org", input="short\n")
    assert weak.returncode == 1 and "at least 10 characters" in weak.stderr
    key = run_cli("apikeys", "create", "--user", "ops", "--expires-days", "7")
    assert key.returncode == 0 and key.stdout.strip().startswith("st_")
    assert run_cli("apikeys", "create", "--user", "ghost").returncode == 1
    assert run_cli("users", "reset-password", "--username", "ops", input="a new long password\n").returncode == 0
    env = run_cli("server", "--env", "my-lora")
    assert env.returncode == 1 and "no environment 'my-lora'" in env.stderr
    spoof = run_cli("server", "--forwarded-allow-ips", "*")
    assert spoof.returncode == 1 and "would trust every client" in spoof.stderr
    half = run_cli("server", "--ssl-key", "k.pem")
    assert half.returncode == 1 and "--ssl-cert" in half.stderr


def test_server_modules_import_no_training_stack(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from falcon import testing\n"
        "from simpletuner.core.plugins import Registry\n"
        "from simpletuner.core.workspace import Workspace\n"
        "from simpletuner.ui.app import create_app\n"
        "from simpletuner.ui.db import open_database, migrate\n"
        f"root = Path({str(tmp_path)!r})\n"
        "db = open_database(None, root); migrate(db)\n"
        "registry = Registry(); registry.rows()\n"
        "app = create_app(database=db, registry=registry, workspace=Workspace(root))\n"
        "client = testing.TestClient(app)\n"
        "for path in ('/health', '/setup', '/api/auth/providers', '/login'):\n"
        "    client.simulate_get(path)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([str(Path(SIMPLETUNER_BIN).parent / "python"), "-c", code], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
