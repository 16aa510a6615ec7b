"""Hostile input over real HTTP: every route answers a refusal (4xx), never a server error (5xx)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator

import pytest
from live_http import LiveHttp, serve

from .conftest import PASSWORD, Server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def live(server: Server) -> Iterator[LiveHttp]:
    with serve(server.app) as http:
        yield http


def damaged_zip(files: dict[str, bytes]) -> bytes:
    """A stored (uncompressed) ZIP whose last entry has one byte flipped: its CRC no longer matches."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    raw[bytes(raw).index(list(files.values())[-1])] ^= 0xFF
    return bytes(raw)


def test_deeply_nested_login_body_is_a_bad_request(server: Server, live: LiveHttp) -> None:
    answer = live.request("POST", "/api/auth/login", b"[" * 60000, {"Content-Type": "application/json"})
    assert answer.status == 400 and "nested deeper than" in answer.json["description"]


@pytest.mark.parametrize("body, reason", [
    (b'{"username": "root", "password": NaN}', "NaN is not a JSON number"),
    (b'{"username": "root", "password": 1e999}', "out of range"),
    (b'{"username": "root", "password": ' + b"9" * 5000 + b"}", "larger than a 64-bit integer"),
    (b'{"username": "\\ud800", "password": "x"}', "unpaired surrogate"),
    (b'{"username": "\xff\xfe"}', "not valid JSON"),
])
def test_json_python_accepts_but_nothing_can_store_is_refused(live: LiveHttp, body: bytes, reason: str) -> None:
    answer = live.request("POST", "/api/auth/login", body, {"Content-Type": "application/json"})
    assert answer.status == 400 and reason in answer.json["description"], answer.text


def test_numbers_in_query_and_headers_must_be_ascii_digits(server: Server, live: LiveHttp) -> None:
    server.setup_admin()
    auth = live.log_in("root", PASSWORD)
    for path in ("/api/jobs?limit=%C2%B2", "/api/audit?limit=%C2%B2", "/api/audit?before=%D9%A3",
                 "/api/jobs?limit=-1"):
        answer = live.request("GET", path, None, auth)
        assert answer.status == 400 and "digits 0-9" in answer.json["description"], (path, answer.text)
    huge = live.request("GET", "/api/audit?limit=" + "9" * 5000, None, auth)
    assert huge.status == 200 and len(huge.json["events"]) >= 1  # capped at the maximum, like any large number
    stream = live.request("GET", "/api/events", None, {**auth, "Last-Event-ID": "²"}, read_body=False)
    assert stream.status == 400
    resumed = live.request("GET", "/api/events", None, {**auth, "Last-Event-ID": "0"}, read_body=False)
    assert resumed.status == 200 and resumed.headers["content-type"].startswith("text/event-stream")


def test_damaged_archives_are_refused_naming_the_entry(server: Server, live: LiveHttp) -> None:
    server.setup_admin()
    auth = live.log_in("root", PASSWORD)
    archive = damaged_zip({"pets/config.json": b'{"model_family": "flux"}', "pets/notes.txt": b"notes " * 20})
    imported = live.request("POST", "/api/environment-import", archive, {**auth, "Content-Type": "application/zip"})
    assert imported.status == 400 and "'pets/notes.txt' is damaged" in imported.json["description"], imported.text
    assert not (server.app.app_context.workspace.configs_dir / "pets").exists()

    assert live.json("POST", "/api/datasets/folders", {"name": "mine"}, auth).status == 201
    upload = damaged_zip({"a.txt": b"a caption", "b.txt": b"another caption"})
    answer = live.request("PUT", "/api/datasets/upload?path=mine&name=set.zip", upload,
                          {**auth, "Content-Type": "application/octet-stream"})
    assert answer.status == 400 and "'b.txt' is damaged" in answer.json["description"], answer.text
    assert list((server.app.app_context.workspace.datasets_dir / "mine").iterdir()) == []


HOSTILE_BODIES = [
    ("application/json", b"[" * 60000),
    ("application/json", b'{"a":' * 2000 + b"1" + b"}" * 2000),
    ("application/json", b'{"name": NaN, "limit": Infinity, "resolution": -Infinity}'),
    ("application/json", b'{"name": 1e999, "id": 123456789012345678901234567890}'),
    ("application/json", b'{"name": "\xff\xfe\x00"}'),
    ("application/json", b'{"name": "\\ud800", "username": "\\udfff"}'),
    ("application/json", b"[1, 2]"),
    ("application/json; charset=utf-16", b"{}"),
    ("text/plain", b"hello"),
    ("application/zip", b"PK\x03\x04 not really"),
    ("multipart/form-data; boundary=x", b"--x\r\n\r\n--x--"),
]
HOSTILE_QUERY = ("?limit=%C2%B2&before=%C2%B2&points=%C2%B2&tail=%C2%B2&log_lines=%C2%B2&job=%C2%B2&since=%C2%B2"
                 "&path=%00&name=%ff&env=..%2F..&resolution=nan&minimum_image_size=1e999&next=%ff&remember=%C2%B2")


def _concrete(template: str) -> str:
    path = re.sub(r"\{\w+:int\}", "1", template)
    path = re.sub(r"\{\w+:path\}", "a/b", path)
    return re.sub(r"\{\w+\}", "default", path)


def test_walking_the_route_table_with_hostile_input_gives_no_server_error(server: Server, live: LiveHttp) -> None:
    server.setup_admin()
    auth = live.log_in("root", PASSWORD)
    # logging out last keeps the session for every other route
    routes = sorted(server.app.routes, key=lambda route: route.template == "/api/auth/logout")
    errors = []
    for route in routes:
        path = _concrete(route.template)
        for method in route.methods():
            streams = route.template == "/api/events"
            for headers in (auth, {}):  # as the admin, then anonymously
                if method in ("GET", "HEAD", "OPTIONS"):
                    answer = live.request(method, path + HOSTILE_QUERY, None,
                                          {**headers, "Last-Event-ID": "²"}, read_body=not streams)
                    if answer.status >= 500:
                        errors.append((method, path + HOSTILE_QUERY, answer.status, answer.text[:200]))
                    continue
                for content_type, body in HOSTILE_BODIES:
                    answer = live.request(method, path + HOSTILE_QUERY, body, {**headers, "Content-Type": content_type})
                    if answer.status >= 500:
                        errors.append((method, path, content_type, body[:40], answer.status, answer.text[:200]))
    assert errors == []
