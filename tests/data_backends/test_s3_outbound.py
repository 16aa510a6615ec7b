"""The admin outbound policy over real HTTP: remote dataset tests and scans reach public addresses only, unless an
admin allows a host or network; every resolved address is checked and connected to as checked; redirects go
through the same check; a non-admin never sees what a remote answered."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from live_http import LiveHttp, serve

from simpletuner.core import outbound
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(120)
PASSWORD = "correct horse battery"


class Site:
    """A loopback HTTP server that records the connections it gets and answers every request the same way."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.hits: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                site.hits.append(f"{self.command} {self.path}")
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class App:
    """The app over HTTP with an admin's and a researcher's sessions."""

    def __init__(self, root: Path) -> None:
        from simpletuner.ui.app import create_app
        from simpletuner.ui.db import open_database
        from simpletuner.ui.db.migrations import migrate
        from simpletuner.ui.settings import ServerSettings

        self.database = open_database(None, root)
        self.database.connect()
        migrate(self.database)
        self.app = create_app(database=self.database, registry=Registry(), workspace=Workspace(root),
                              settings=ServerSettings(bcrypt_rounds=4))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[LiveHttp, dict[str, str], dict[str, str]]]:
    """(server, admin headers, headers of a researcher who may choose endpoints); ``remy`` is a plain
    researcher."""
    instance = App(tmp_path / "ws")
    with serve(instance.app) as live:
        first = {"username": "root", "email": "root@example.org", "password": PASSWORD}
        assert live.json("POST", "/api/auth/setup/first-admin", first).status == 201
        admin = live.log_in("root", PASSWORD)
        # rita may choose endpoints (config.trusted) but not the outbound policy (settings.manage)
        trusted = {"name": "trusted-researcher", "permissions": ["config.view", "config.edit", "config.trusted"]}
        assert live.json("POST", "/api/levels", trusted, admin).status == 201
        rita = {"username": "rita", "email": "rita@example.org", "password": PASSWORD,
                "levels": ["researcher", "trusted-researcher"]}
        assert live.json("POST", "/api/users", rita, admin).status == 201
        remy = {"username": "remy", "email": "remy@example.org", "password": PASSWORD, "levels": ["researcher"]}
        assert live.json("POST", "/api/users", remy, admin).status == 201
        yield live, admin, live.log_in("rita", PASSWORD)
    instance.database.close()


@pytest.fixture
def site() -> Iterator[Site]:
    """A loopback site answering 418 with an internal secret in its body."""
    instance = Site(418, {"X-Internal": "secret-header-value"}, b"<Error><Code>Teapot</Code>"
                    b"<Message>INTERNAL-SECRET-42</Message></Error>")
    yield instance
    instance.close()


def remote_test(live: LiveHttp, headers: dict[str, str], endpoint: str, bucket: str = "bucket-one") -> Any:
    return live.json("POST", "/api/datasets/remote/test",
                     {"type": "s3", "options": {"aws_bucket_name": bucket, "aws_endpoint_url": endpoint}}, headers)


def allow(live: LiveHttp, admin: dict[str, str], **policy: Any) -> Any:
    return live.json("PATCH", "/api/settings/outbound", policy, admin)


@pytest.mark.parametrize("endpoint, kind", [
    ("http://{site}", "loopback"),
    ("http://localhost:{port}", "loopback"),
    ("http://[::1]:{port}", "loopback"),
    ("http://169.254.169.254", "link-local"),
    ("http://10.20.30.40:9000", "private"),
    ("http://192.168.1.1", "private"),
    ("http://[fd00::1]:9000", "private"),
    ("http://0.0.0.0:{port}", "unspecified"),
    ("http://224.0.0.1", "multicast"),
])
def test_the_default_policy_refuses_every_non_public_address(app: tuple[LiveHttp, dict[str, str], dict[str, str]],
                                                             site: Site, endpoint: str, kind: str) -> None:
    live, admin, rita = app
    url = endpoint.format(site=site.hostport, port=site.hostport.rsplit(":", 1)[1])
    for headers in (rita, admin):
        answer = remote_test(live, headers, url)
        assert answer.status == 422, answer.text
        description = answer.json["description"]
        assert f"a {kind} address" in description and "allowed_hosts" in description and url in description
    assert site.hits == []  # refused before a single packet


def test_an_admin_allows_a_host_and_only_admins_change_the_policy(app: tuple[LiveHttp, dict[str, str],
                                                                               dict[str, str]],
                                                                  s3_endpoint: str, bucket: str) -> None:
    live, admin, rita = app
    assert live.request("GET", "/api/settings/outbound", None, admin).json == {"allow_private": False,
                                                                              "allowed_hosts": []}
    hostport = s3_endpoint.split("://", 1)[1]
    assert allow(live, rita, allowed_hosts=[hostport]).status == 403
    assert live.request("GET", "/api/settings/outbound", None, rita).status == 403
    for bad, reason in (([1], "list of at most 100 strings"), (["http://x"], "is a URL"), (["h:0"], "valid port"),
                        (["10.0.0.0/33"], "not a network")):
        answer = allow(live, admin, allowed_hosts=bad)
        assert answer.status == 400 and reason in answer.json["description"], answer.text
    assert allow(live, admin, allow_private="yes").status == 400
    assert allow(live, admin, hosts=[]).status == 400

    changed = allow(live, admin, allowed_hosts=[hostport])
    assert changed.status == 200 and changed.json == {"allow_private": False, "allowed_hosts": [hostport]}
    assert remote_test(live, rita, s3_endpoint, bucket).json == {"ok": True, "location": f"s3://{bucket} at "
                                                                                        f"{s3_endpoint}"}
    other_port = f"http://127.0.0.1:{int(hostport.rsplit(':', 1)[1]) + 1}"
    assert "a loopback address" in remote_test(live, rita, other_port).json["description"]
    # allow_private opens private networks, never loopback or link-local
    assert allow(live, admin, allow_private=True, allowed_hosts=[]).json["allow_private"] is True
    assert "a loopback address" in remote_test(live, rita, s3_endpoint, bucket).json["description"]
    assert "a link-local address" in remote_test(live, rita, "http://169.254.169.254").json["description"]
    audit = live.request("GET", "/api/audit", None, admin).json["events"]
    assert [e["event"] for e in audit].count("outbound_policy_changed") == 2

    page = live.request("GET", "/admin/outbound", None, admin)
    assert page.status == 200 and 'name="allow_private"' in page.text and "checked" in page.text
    assert live.request("GET", "/admin/outbound", None, rita).status == 403


def test_a_name_resolving_to_any_refused_address_is_refused(app: tuple[LiveHttp, dict[str, str], dict[str, str]],
                                                            site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    live, admin, rita = app
    port = int(site.hostport.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "storage.example":  # one public and one loopback answer: the classic rebinding set-up
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    answer = remote_test(live, rita, f"http://storage.example:{port}")
    assert answer.status == 422 and "storage.example (127.0.0.1)" in answer.json["description"]
    assert site.hits == []


def test_the_connection_goes_to_the_address_that_was_checked(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name is resolved once per connection and the socket connects to that very answer, so a DNS answer
    that changes after the check is never used."""
    port = int(site.hostport.rsplit(":", 1)[1])
    answers = iter([("127.0.0.1", port), ("10.9.9.9", port)])
    calls = []

    def changing(host: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", next(answers))]

    monkeypatch.setattr(socket, "getaddrinfo", changing)
    policy = outbound.OutboundPolicy.from_json({"allowed_hosts": [site.hostport]})
    with outbound.connect("pinned.example", port, policy, timeout=5) as sock:
        assert sock.getpeername() == ("127.0.0.1", port)
    assert calls == ["pinned.example"]


def test_redirects_to_a_refused_address_are_not_followed(app: tuple[LiveHttp, dict[str, str], dict[str, str]],
                                                         site: Site) -> None:
    live, admin, rita = app
    redirector = Site(307, {"Location": f"http://{site.hostport}/bucket-one", "x-amz-bucket-region": "eu-west-1"})
    try:
        assert allow(live, admin, allowed_hosts=[redirector.hostport]).status == 200
        answer = remote_test(live, admin, f"http://{redirector.hostport}")
        assert answer.status == 422 and redirector.hits
        assert site.hits == []
    finally:
        redirector.close()


def test_a_non_admin_never_sees_what_the_remote_answered(app: tuple[LiveHttp, dict[str, str], dict[str, str]],
                                                         site: Site) -> None:
    live, admin, rita = app
    assert allow(live, admin, allowed_hosts=[site.hostport]).status == 200
    endpoint = f"http://{site.hostport}"
    as_admin = remote_test(live, admin, endpoint)
    admin_sees = as_admin.json["description"].replace(site.hostport, "")
    assert as_admin.status == 422 and "418" in admin_sees  # admins see the details
    for path, extra in (("/api/datasets/remote/test", {}), ("/api/datasets/remote/scan", {"resolution": 128})):
        answer = live.json("POST", path, {"type": "s3", "options": {"aws_bucket_name": "bucket-one",
                                                                    "aws_endpoint_url": endpoint}, **extra}, rita)
        assert answer.status == 422
        assert endpoint in answer.json["description"] and "audit log" in answer.json["description"]
        shown = answer.text.replace(site.hostport, "")  # the port number may itself contain "418"
        for leak in ("418", "Teapot", "INTERNAL-SECRET-42", "secret-header-value"):
            assert leak not in shown
    events = [e for e in live.request("GET", "/api/audit", None, admin).json["events"]
              if e["event"] == "remote_dataset_failed"]
    assert events and all("418" in e["detail"]["error"].replace(site.hostport, "") for e in events)


def test_a_researcher_without_config_trusted_cannot_choose_an_endpoint(
        app: tuple[LiveHttp, dict[str, str], dict[str, str]], site: Site) -> None:
    live, admin, _ = app
    assert allow(live, admin, allowed_hosts=[site.hostport]).status == 200
    remy = live.log_in("remy", PASSWORD)
    for path, extra in (("/api/datasets/remote/test", {}), ("/api/datasets/remote/scan", {"resolution": 128})):
        answer = live.json("POST", path, {"type": "s3", "options": {"aws_bucket_name": "bucket-one",
                                                                    "aws_endpoint_url": f"http://{site.hostport}"},
                                          **extra}, remy)
        assert answer.status == 403 and "config.trusted" in answer.json["description"]
    assert site.hits == []
