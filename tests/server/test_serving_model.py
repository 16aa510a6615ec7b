"""The serving model over real HTTP: open event streams and slow clients cost the server no threads; bodies and
headers have deadlines; streams are limited per user and per key, send heartbeats, end on logout, key revocation
and shutdown, and resume with ``Last-Event-ID`` across the replacement of a killed worker."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobs.live import LiveServer, make_users

from simpletuner.plugins.executors.processes import descendants

pytestmark = pytest.mark.timeout(240)
PASSWORD = "correct horse battery"


def _database(workspace: Path) -> Any:
    from simpletuner.ui.db import bind_models, open_database
    from simpletuner.ui.jobs.models import bind_job_models

    database = open_database(None, workspace)
    database.connect(reuse_if_open=True)
    bind_models(database)
    bind_job_models(database)
    return database


def _add_events(workspace: Path, count: int) -> list[int]:
    """Store ``count`` events of one job, as the supervisor does; returns their ids."""
    from simpletuner.ui.jobs.models import Job, JobEvent

    database = _database(workspace)
    with database.atomic():
        job = Job.select().first() or Job.create(**_job_fields())
        ids = [JobEvent.create(job=job, at=time.time(), event="step", data={"event": "step", "step": i}).id
               for i in range(count)]
    database.close()
    return ids


def _job_fields() -> dict[str, Any]:
    from simpletuner.ui.db.models import User

    owner = User.get(User.username == "root")
    now = time.time()  # an ended job: nothing will act on it while the test adds its events
    return {"environment": "streams", "owner": owner, "status": "completed", "output_dir": "/nonexistent",
            "created_at": now, "ended_at": now}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="module")
def keys(workspace: Path) -> dict[str, str]:
    from simpletuner.ui.auth.apikeys import create_api_key
    from simpletuner.ui.auth.users import create_user
    from simpletuner.ui.db.models import User

    made = make_users(workspace)
    database = _database(workspace)
    with database.atomic():
        rita = User.get(User.username == "rita")
        made["rita-2"] = create_api_key(user=rita, name="second", now=time.time())[0]
        create_user(username="sam", email="sam@example.org", password=PASSWORD, levels=["researcher"],
                    now=time.time(), rounds=4)
    database.close()
    return made


@pytest.fixture(scope="module")
def server(workspace: Path, keys: dict[str, str]) -> Iterator[LiveServer]:
    live = LiveServer(workspace, keys, {}, "--threads", "2", "--stream-heartbeat", "1", "--header-timeout", "2",
                      "--body-timeout", "2", "--streams-per-user", "5", "--streams-per-key", "3")
    yield live
    live.stop()


def _open_stream(server: LiveServer, headers: dict[str, str], path: str = "/api/events"
                 ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    conn.request("GET", path, headers={"Accept": "text/event-stream", **headers})
    return conn, conn.getresponse()


def _key(server: LiveServer, user: str) -> dict[str, str]:
    return {"X-API-Key": server.keys[user]}


def _ends_within(response: http.client.HTTPResponse, seconds: float) -> bytes:
    """Read a stream until it ends; fails if it is still open after ``seconds``."""
    deadline, seen = time.monotonic() + seconds, b""
    while time.monotonic() < deadline:
        try:
            chunk = response.read1(4096)
        except (http.client.IncompleteRead, ConnectionError):
            return seen  # cut off mid-stream (its worker was killed)
        if not chunk:
            return seen
        seen += chunk
    raise AssertionError(f"the stream was still open after {seconds} s: {seen[-200:]!r}")


def _timed(server: LiveServer, path: str, user: str | None = None) -> float:
    started = time.monotonic()
    status, _ = server.call("GET", path, user=user)
    assert status == 200
    return time.monotonic() - started


def test_open_streams_and_stalled_clients_leave_requests_fast(server: LiveServer) -> None:
    streams = [_open_stream(server, _key(server, user)) for user in ("root", "lena", "rita", "remy", "vic")
               for _ in range(3)]  # 15 streams: far more than the 2 × 2 request threads
    stalled = []
    for _ in range(10):  # clients that send half a body, and clients that send half their headers
        body = socket.create_connection(("127.0.0.1", server.port))
        body.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        headers = socket.create_connection(("127.0.0.1", server.port))
        headers.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        stalled += [body, headers]
    try:
        assert all(response.status == 200 for _, response in streams)
        worst = max(max(_timed(server, "/health"), _timed(server, "/api/training/status", "vic"))
                    for _ in range(20))
        assert worst < 1.0, f"a request took {worst:.2f} s while streams and stalled clients were open"
    finally:
        for conn, _ in streams:
            conn.close()
        for sock in stalled:
            sock.close()


def test_a_stalled_body_gets_408_and_stalled_headers_are_dropped(server: LiveServer) -> None:
    body = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    body.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    started = time.monotonic()
    answer = body.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 2 s" in answer and time.monotonic() - started < 5
    headers = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    headers.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    assert headers.recv(4096) == b"" and time.monotonic() - started < 5  # closed without an answer
    body.close()
    headers.close()


def test_only_a_logged_in_caller_may_send_a_large_body(server: LiveServer) -> None:
    big = 2 * 1024 * 1024
    anonymous = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    anonymous.sendall(f"PUT /api/datasets/upload?name=x.png HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n"
                      .encode())
    answer = anonymous.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401") and b"logged-in users only" in answer, answer
    anonymous.close()
    chunked = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    chunked.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 65536
    try:
        for _ in range(20):
            chunked.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    except OSError:
        pass  # the server may close the connection before all of it is sent
    assert chunked.recv(4096).startswith(b"HTTP/1.1 411")
    chunked.close()
    # with a key, a large body reaches the app, which streams it as it arrives
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/api/environments", body=b"{" + b" " * big + b"}",
                 headers={**_key(server, "root"), "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 413, response.read()  # the app's own JSON limit answered, not the bridge
    conn.close()


def test_streams_are_limited_per_key_and_per_user(server: LiveServer) -> None:
    opened = [_open_stream(server, _key(server, "rita")) for _ in range(3)]
    assert [response.status for _, response in opened] == [200] * 3
    conn, refused = _open_stream(server, _key(server, "rita"))
    assert refused.status == 429 and "this API key already has 3" in json.loads(refused.read())["description"]
    conn.close()
    opened += [_open_stream(server, _key(server, "rita-2")) for _ in range(2)]
    conn, refused = _open_stream(server, _key(server, "rita-2"))
    assert refused.status == 429 and "you already have 5" in json.loads(refused.read())["description"]
    conn.close()
    for conn, _ in opened:
        conn.close()
    deadline = time.monotonic() + 10  # closed streams stop counting once the server sees the clients leave
    while True:
        conn, response = _open_stream(server, _key(server, "rita"))
        conn.close()
        if response.status == 200:
            break
        assert time.monotonic() < deadline, "closed streams still counted against the limit"
        time.sleep(0.2)


def test_streams_send_heartbeats_and_end_on_revocation_and_logout(server: LiveServer) -> None:
    conn, response = _open_stream(server, _key(server, "remy"))
    assert response.read1(100) == b"retry: 2000\n\n"
    started = time.monotonic()
    assert response.read1(100) == b": keepalive\n\n" and time.monotonic() - started < 3
    status, listed = server.call("GET", "/api/apikeys", user="remy")
    assert status == 200
    status, _ = server.call("DELETE", f"/api/apikeys/{listed['keys'][0]['id']}", user="remy")
    assert status in (200, 204)
    _ends_within(response, 10)
    conn.close()

    login = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    login.request("POST", "/api/auth/login", body=json.dumps({"username": "sam", "password": PASSWORD}),
                  headers={"Content-Type": "application/json"})
    answer = login.getresponse()
    body = json.loads(answer.read())
    assert answer.status == 200, body
    cookie = next(c for c in answer.headers.get_all("Set-Cookie") if c.startswith("st_session=")).split(";")[0]
    login.close()
    conn, response = _open_stream(server, {"Cookie": cookie})
    assert response.status == 200
    logout = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    logout.request("POST", "/api/auth/logout", body="{}", headers={
        "Cookie": cookie, "Content-Type": "application/json", "X-CSRF-Token": body["csrf_token"]})
    assert logout.getresponse().status in (200, 204)
    _ends_within(response, 10)
    conn.close()


def test_a_stream_resumes_without_gaps_after_its_worker_is_killed(server: LiveServer, workspace: Path) -> None:
    first = _add_events(workspace, 3)
    conn, response = _open_stream(server, {**_key(server, "lena"), "Last-Event-ID": str(first[0])})
    text = b""
    while text.count(b"data: ") < 2:
        text += response.read1(4096)
    assert f"id: {first[1]}".encode() in text and f"id: {first[2]}".encode() in text
    assert f"id: {first[0]}\n".encode() not in text
    workers = _workers(server)
    assert len(workers) == 2
    for pid in workers:  # whichever serves the stream dies
        os.kill(pid, signal.SIGKILL)
    _ends_within(response, 10)
    conn.close()
    missed = _add_events(workspace, 4)  # stored while no stream was open
    deadline = time.monotonic() + 30
    while True:  # gunicorn replaces the workers
        try:
            conn, response = _open_stream(server, {**_key(server, "lena"), "Last-Event-ID": str(first[2])})
            if response.status == 200:
                break
            conn.close()
        except OSError:
            pass
        assert time.monotonic() < deadline, "no worker came back"
        time.sleep(0.2)
    live = _add_events(workspace, 2)  # stored while the resumed stream is open
    text = b""
    while text.count(b"data: ") < 6:
        text += response.read1(4096)
    ids = [int(line[4:]) for line in text.decode().splitlines() if line.startswith("id: ")]
    assert ids == missed + live
    conn.close()


def _workers(server: LiveServer) -> list[int]:
    """The gunicorn workers: the server's children that run the same command line as the server itself."""
    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    master = cmdline(server.process.pid)
    return [pid for pid in descendants(server.process.pid) if cmdline(pid) == master]


def test_shutdown_ends_open_streams_at_once(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, make_users(tmp_path), {}, "--stream-heartbeat", "30")
    streams = [_open_stream(live, _key(live, user)) for user in ("root", "lena", "vic")]
    assert all(response.status == 200 for _, response in streams)
    started = time.monotonic()
    live.process.send_signal(signal.SIGTERM)
    for conn, response in streams:
        _ends_within(response, 8)
        conn.close()
    assert live.stop() == 0 and time.monotonic() - started < 9


def test_a_large_upload_streams_in_and_downloads_whole(server: LiveServer, workspace: Path) -> None:
    content = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * 1024 * 1024)  # larger than what is read before the app runs
    (workspace / "datasets" / "big").mkdir(parents=True, exist_ok=True)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("PUT", "/api/datasets/upload?path=big&name=large.png", body=content, headers=_key(server, "root"))
    response = conn.getresponse()
    assert response.status == 201, response.read()
    conn.close()
    status, body = server.call("GET", "/api/datasets/file?path=big/large.png", user="vic")
    assert status == 200 and body == content  # sent in several blocks


def test_a_header_spelled_with_underscores_cannot_pose_as_another(server: LiveServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    conn.request("GET", "/api/training/status", headers={"X_API_Key": server.keys["root"]})
    assert conn.getresponse().status == 401  # not read as X-API-Key
    conn.close()
