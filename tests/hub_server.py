"""A loopback HTTP server standing in for the Hugging Face Hub, shared by the publishing and Hub-login tests.

It answers ``GET /api/whoami-v2`` for the tokens in ``HubState.tokens``, ``POST /api/repos/create``,
``POST /api/models/<repo>/preupload/<rev>`` (every file "regular", i.e. sent inline),
``POST /api/models/<repo>/commit/<rev>`` (NDJSON: a header line then one line per file, base64) and
``POST /api/validate-yaml``, records every request with its Authorization header, and can answer the next commits
with given error statuses.
"""

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
class Commit:
    repo_id: str
    revision: str
    summary: str
    files: dict[str, bytes]


@attrs.define
class HubState:
    base_url: str = ""
    repos: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    commits: list[Commit] = attrs.field(factory=list)
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    #: Statuses to answer the next commit requests with, first one first (e.g. [503, 503] then success).
    commit_failures: list[int] = attrs.field(factory=list)
    #: Authorization header of every POST
    authorization: list[str | None] = attrs.field(factory=list)
    #: token -> (account name, token role) known to ``whoami-v2``
    tokens: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    #: (path, Authorization header) of every request
    auth_by_path: list[tuple[str, str | None]] = attrs.field(factory=list)

    def auth_of(self, path_part: str) -> list[str | None]:
        """The Authorization headers of the requests whose path contains ``path_part``."""
        return [auth for path, auth in self.auth_by_path if path_part in path]


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.requests.append(("GET", self.path))
            auth = self.headers.get("Authorization")
            state.auth_by_path.append((self.path, auth))
            if self.path.split("?")[0] != "/api/whoami-v2":
                return self._reply(404, {"error": f"not served by the test hub: {self.path}"})
            token = (auth or "").removeprefix("Bearer ")
            if token not in state.tokens:
                return self._reply(401, {"error": "Invalid credentials in Authorization header"})
            name, role = state.tokens[token]
            self._reply(200, {"type": "user", "name": name, "auth": {
                "type": "access_token", "accessToken": {"displayName": "test", "role": role}}})

        def do_POST(self) -> None:  # noqa: N802
            state.requests.append(("POST", self.path))
            state.authorization.append(self.headers.get("Authorization"))
            state.auth_by_path.append((self.path, self.headers.get("Authorization")))
            body = self._body()
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["api", "repos", "create"]:
                payload = json.loads(body)
                repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") \
                    else payload["name"]
                state.repos[repo_id] = payload
                return self._reply(200, {"url": f"{state.base_url}/{repo_id}", "name": repo_id})
            if parts == ["api", "validate-yaml"]:
                return self._reply(200, {})
            if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "preupload":
                files = json.loads(body)["files"]
                return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                    "shouldIgnore": False} for f in files]})
            if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "commit":
                if state.commit_failures:
                    status = state.commit_failures.pop(0)
                    return self._reply(status, {"error": f"test hub answers {status}"})
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                         for line in lines if line["key"] == "file"}
                repo_id = f"{parts[2]}/{parts[3]}"
                state.commits.append(Commit(repo_id, parts[5], header["summary"], files))
                return self._reply(200, {"commitUrl": f"{state.base_url}/{repo_id}/commit/{'a' * 40}",
                                         "commitOid": "a" * 40, "pullRequestUrl": None})
            self._reply(404, {"error": f"not served by the test hub: {self.path}"})

    return Handler


@contextmanager
def fake_hub() -> Iterator[HubState]:
    """Serve a test hub on a free loopback port for the duration of the block."""
    state = HubState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
