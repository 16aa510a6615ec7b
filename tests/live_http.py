"""An in-process WSGI app served over real HTTP: a loopback port the OS picks (port 0), one thread per request.

Tests that need the app's settable clock or its database next to real sockets (raw bytes, odd headers, uploads)
use it instead of ``simpletuner server``.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import attrs


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


@attrs.frozen
class Answer:
    """A response: status, headers (lowercase names; the last of repeated ones, all of ``set-cookie``), body."""

    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@attrs.define
class LiveHttp:
    """Where a served app listens, and a raw HTTP client for it."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, *, timeout: float = 30, read_body: bool = True) -> Answer:
        """One request on a fresh connection; ``read_body=False`` returns after the headers (event streams)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body.encode() if isinstance(body, str) else body,
                               headers=dict(headers or {}))
            response = connection.getresponse()
            data = response.read() if read_body else b""
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                          response.headers.get_all("Set-Cookie") or [], data)
        finally:
            connection.close()

    def json(self, method: str, path: str, value: Any, headers: Mapping[str, str] | None = None) -> Answer:
        """A request with a JSON body."""
        return self.request(method, path, json.dumps(value), {"Content-Type": "application/json", **(headers or {})})

    def log_in(self, username: str, password: str) -> dict[str, str]:
        """Log in; returns the headers of the session (its cookie and CSRF token), as the browser UI sends them."""
        answer = self.json("POST", "/api/auth/login", {"username": username, "password": password})
        assert answer.status == 200, answer.text
        cookie = next(c for c in answer.cookies if c.startswith("st_session=")).split(";")[0]
        return {"Cookie": cookie, "X-CSRF-Token": answer.json["csrf_token"]}


@contextmanager
def serve(app: Any) -> Iterator[LiveHttp]:
    """Serve ``app`` on 127.0.0.1 (port 0) until the block ends."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LiveHttp("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
