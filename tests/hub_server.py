"""A loopback HTTP server standing in for the Hugging Face Hub, shared by the publishing and Hub-login tests.

It answers ``GET /api/whoami-v2`` for the tokens in ``HubState.tokens``, ``POST /api/repos/create``,
``POST /api/models/<repo>/preupload/<rev>`` (files up to ``HubState.lfs_threshold`` "regular", i.e. sent inline in
the commit, larger ones "lfs"), the Git LFS batch API ``POST /<repo>.git/info/lfs/objects/batch`` (basic transfer:
an upload action pointing back here, ``PUT /lfs-storage/<oid>``, and a verify action), ``POST
/api/models/<repo>/commit/<rev>`` (NDJSON: a header line then one line per file, base64 for regular files, sha256 and
size for LFS files, which must match an uploaded object) and ``POST /api/validate-yaml``, records every request with
its Authorization header, and can answer the next commits with given error statuses.

The Hub's Xet storage path is not served: tests that send LFS files set ``huggingface_hub.constants.HF_HUB_DISABLE_XET``
so that the client takes the LFS path it falls back to without ``hf_xet``.
"""

from __future__ import annotations

import base64
import hashlib
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
    #: the paths among ``files`` that were committed as LFS pointers to uploaded objects
    lfs_files: set[str] = attrs.field(factory=set)


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
    #: files larger than this many bytes are answered "lfs" by preupload (the Hub's 10 MB)
    lfs_threshold: int = 10 * 1024 * 1024
    #: LFS objects uploaded through the batch API's upload action, by sha256
    lfs_objects: dict[str, bytes] = attrs.field(factory=dict)

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

        def do_PUT(self) -> None:  # noqa: N802
            state.requests.append(("PUT", self.path))
            state.auth_by_path.append((self.path, self.headers.get("Authorization")))
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) != 2 or parts[0] != "lfs-storage":
                return self._reply(404, {"error": f"not served by the test hub: {self.path}"})
            body = self._body()
            # Storage keys objects by content: bytes that do not hash to the announced oid are refused, as S3's
            # signed URL would refuse them.
            if hashlib.sha256(body).hexdigest() != parts[1]:
                return self._reply(400, {"error": "uploaded bytes do not match the object's sha256"})
            state.lfs_objects[parts[1]] = body
            self._reply(200, {})

        def _lfs_batch(self, repo_id: str, payload: dict[str, Any]) -> None:
            if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
                return self._reply(422, {"message": "the test hub serves basic LFS uploads only"})
            objects = []
            for obj in payload["objects"]:
                answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                # An object already stored gets no actions: the client then skips its upload.
                if obj["oid"] not in state.lfs_objects:
                    answer["actions"] = {
                        "upload": {"href": f"{state.base_url}/lfs-storage/{obj['oid']}", "header": {}},
                        "verify": {"href": f"{state.base_url}/{repo_id}.git/info/lfs/objects/verify",
                                   "header": {}}}
                objects.append(answer)
            self._reply(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

        def _lfs_verify(self, payload: dict[str, Any]) -> None:
            stored = state.lfs_objects.get(payload.get("oid", ""))
            if stored is None or len(stored) != payload.get("size"):
                return self._reply(404, {"message": f"no object {payload.get('oid')} of that size"})
            self._reply(200, {})

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
            if len(parts) == 6 and parts[1].endswith(".git") and parts[2:5] == ["info", "lfs", "objects"]:
                repo_id = f"{parts[0]}/{parts[1].removesuffix('.git')}"
                if parts[5] == "batch":
                    return self._lfs_batch(repo_id, json.loads(body))
                if parts[5] == "verify":
                    return self._lfs_verify(json.loads(body))
            if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "preupload":
                files = json.loads(body)["files"]
                return self._reply(200, {"files": [
                    {"path": f["path"], "uploadMode": "lfs" if f["size"] > state.lfs_threshold else "regular",
                     "shouldIgnore": False} for f in files]})
            if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "commit":
                if state.commit_failures:
                    status = state.commit_failures.pop(0)
                    return self._reply(status, {"error": f"test hub answers {status}"})
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                         for line in lines if line["key"] == "file"}
                lfs_files = [line["value"] for line in lines if line["key"] == "lfsFile"]
                for pointer in lfs_files:
                    stored = state.lfs_objects.get(pointer["oid"])
                    if pointer.get("algo") != "sha256" or stored is None or len(stored) != pointer.get("size"):
                        return self._reply(422, {"error": f"{pointer['path']}: no uploaded LFS object "
                                                          f"{pointer['oid']} of size {pointer.get('size')}"})
                    files[pointer["path"]] = stored
                repo_id = f"{parts[2]}/{parts[3]}"
                state.commits.append(Commit(repo_id, parts[5], header["summary"], files,
                                            {pointer["path"] for pointer in lfs_files}))
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
