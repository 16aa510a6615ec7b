"""A loopback HTTP server standing in for the Hugging Face Hub: ``whoami-v2`` for known tokens and the few
endpoints ``HfApi`` uses to publish (repository creation, pre-upload, NDJSON commit, YAML validation). It records
the Authorization header of every request and the files of every commit."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs


@attrs.define
class StubHub:
    base_url: str = ""
    #: token -> (account name, token role)
    tokens: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    #: (method, path, Authorization header) of every request
    requests: list[tuple[str, str, str | None]] = attrs.field(factory=list)
    repos: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    commits: list[tuple[str, dict[str, bytes]]] = attrs.field(factory=list)

    def auth_of(self, path_part: str) -> list[str | None]:
        """The Authorization headers of the requests whose path contains ``path_part``."""
        return [auth for _, path, auth in self.requests if path_part in path]


def _handler(hub: StubHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> str | None:
            auth = self.headers.get("Authorization")
            hub.requests.append((self.command, self.path, auth))
            return auth

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            auth = self._record()
            if self.path.split("?")[0] != "/api/whoami-v2":
                return self._reply(404, {"error": f"not served by the stub hub: {self.path}"})
            token = (auth or "").removeprefix("Bearer ")
            if token not in hub.tokens:
                return self._reply(401, {"error": "Invalid credentials in Authorization header"})
            name, role = hub.tokens[token]
            self._reply(200, {"type": "user", "name": name, "auth": {
                "type": "access_token", "accessToken": {"displayName": "test", "role": role}}})

        def do_POST(self) -> None:  # noqa: N802
            self._record()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["api", "repos", "create"]:
                payload = json.loads(body)
                repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") \
                    else payload["name"]
                hub.repos[repo_id] = payload
                return self._reply(200, {"url": f"{hub.base_url}/{repo_id}", "name": repo_id})
            if parts == ["api", "validate-yaml"]:
                return self._reply(200, {})
            if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "preupload":
                files = json.loads(body)["files"]
                return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                    "shouldIgnore": False} for f in files]})
            if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "commit":
                files = {}
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item.get("key") == "file":
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                hub.commits.append((f"{parts[2]}/{parts[3]}", files))
                return self._reply(200, {"commitUrl": f"{hub.base_url}/{parts[2]}/{parts[3]}/commit/1",
                                         "commitOid": "1" * 40, "pullRequestUrl": None})
            self._reply(404, {"error": f"not served by the stub hub: {self.path}"})

    return Handler


@contextmanager
def stub_hub() -> Iterator[StubHub]:
    """Run the stub on a free loopback port for the duration of the block."""
    hub = StubHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
