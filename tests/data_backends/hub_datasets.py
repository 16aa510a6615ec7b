"""A loopback stand-in of the Hugging Face Hub serving dataset repositories, enough for ``datasets.load_dataset``
and the huggingface backend's shard reader (repository info, file listings, HEAD/GET of files by revision, range
requests) and for ``HfApi.dataset_info``, with private repositories readable only with their token and, optionally,
file downloads redirected to another server (as the Hub redirects to its CDN); point the libraries at it with
:func:`use_hub`. A uniquely named module: test folders share one import namespace."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs


@attrs.define
class DatasetHub:
    """Dataset repositories by id: each commit's files by commit sha, and ``main`` naming the latest commit."""

    base_url: str = ""
    commits: dict[str, dict[str, dict[str, bytes]]] = attrs.field(factory=dict)
    branches: dict[str, dict[str, str]] = attrs.field(factory=dict)
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    #: private repositories: repo id -> the token that may read it (others get the Hub's 401 RepoNotFound)
    private: dict[str, str] = attrs.field(factory=dict)
    #: (path, Authorization header) of every request
    auth: list[tuple[str, str | None]] = attrs.field(factory=list)
    #: when set, GETs of files are answered with a redirect to this server (another origin, as the Hub's CDN)
    redirect_files_to: str | None = None
    #: (method, ``repo@commit/path``, Range header or None) of every request for a file served here
    reads: list[tuple[str, str, str | None]] = attrs.field(factory=list)

    def publish(self, repo: str, files: dict[str, bytes]) -> str:
        """Commit ``files`` (the whole tree) to ``main`` of ``repo``; returns the commit sha."""
        sha = hashlib.sha1(json.dumps([repo, len(self.commits.get(repo, {})),
                                       sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())])
                           .encode()).hexdigest()
        self.commits.setdefault(repo, {})[sha] = dict(files)
        self.branches.setdefault(repo, {})["main"] = sha
        return sha

    def tree(self, repo: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """The commit sha and files of a branch or commit, or None."""
        sha = self.branches.get(repo, {}).get(revision, revision)
        files = self.commits.get(repo, {}).get(sha)
        return None if files is None else (sha, files)


def _handler(hub: DatasetHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes)
                             else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _missing(self, code: str) -> None:
            self._send(404, {"error": code}, {"X-Error-Code": code})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            hub.requests.append((self.command, self.path))
            hub.auth.append((self.path, self.headers.get("Authorization")))
            url = urllib.parse.urlparse(self.path)
            parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
            repo = f"{parts[2]}/{parts[3]}" if parts[:2] == ["api", "datasets"] and len(parts) >= 4 else \
                f"{parts[1]}/{parts[2]}" if parts[:1] == ["datasets"] and len(parts) >= 3 else None
            if repo in hub.private and self.headers.get("Authorization") != f"Bearer {hub.private[repo]}":
                # the Hub hides a private repository from other accounts: 401 with RepoNotFound
                return self._send(401, {"error": "Repository Not Found"}, {"X-Error-Code": "RepoNotFound"})
            if parts[:2] == ["api", "datasets"] and len(parts) >= 4:
                return self._api(f"{parts[2]}/{parts[3]}", parts[4:], url.query)
            if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
                return self._file(f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:]))
            return self._missing("RepoNotFound")

        do_HEAD = do_GET

        def _api(self, repo: str, rest: list[str], query: str) -> None:
            if repo not in hub.commits:
                return self._missing("RepoNotFound")
            found = hub.tree(repo, rest[1] if len(rest) >= 2 else "main")
            if found is None:
                return self._missing("RevisionNotFound")
            sha, files = found
            if not rest or rest[0] == "revision":
                return self._send(200, {"id": repo, "sha": sha, "private": repo in hub.private, "tags": [],
                                        "cardData": {}, "siblings": [{"rfilename": name} for name in files]})
            if rest[0] == "tree":
                folder = "/".join(rest[2:])
                return self._send(200, _listing(files, folder, "recursive=true" in query.lower()))
            return self._missing("EntryNotFound")

        def _file(self, repo: str, revision: str, name: str) -> None:
            found = hub.tree(repo, revision)
            if found is None:
                return self._missing("RepoNotFound" if repo not in hub.commits else "RevisionNotFound")
            sha, files = found
            if name not in files:
                return self._send(404, {"error": "EntryNotFound"}, {"X-Error-Code": "EntryNotFound",
                                                                     "X-Repo-Commit": sha})
            data = files[name]
            if hub.redirect_files_to and self.command == "GET":
                target = f"{hub.redirect_files_to}/datasets/{repo}/resolve/{sha}/{urllib.parse.quote(name)}"
                return self._send(302, b"", {"Location": target, "X-Repo-Commit": sha})
            headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes"}
            asked = self.headers.get("Range", "")
            hub.reads.append((self.command, f"{repo}@{sha}/{name}", asked or None))
            if asked.startswith("bytes=") and self.command == "GET":
                first, _, last = asked[len("bytes="):].partition("-")
                start, end = int(first), min(len(data) - 1, int(last)) if last else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._send(206, data[start:end + 1], headers)
            self._send(200, data, headers)

    return Handler


def _listing(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict[str, Any]]:
    """The Hub's tree listing of ``folder``: files, and the folders on the way to them."""
    prefix = f"{folder}/" if folder else ""
    folders: set[str] = set()
    entries = []
    for name, data in sorted(files.items()):
        if not name.startswith(prefix):
            continue
        below = name[len(prefix):].split("/")
        for depth in range(1, len(below) if recursive else min(len(below), 2)):
            folders.add(prefix + "/".join(below[:depth]))
        if recursive or len(below) == 1:
            entries.append({"type": "file", "path": name, "size": len(data),
                            "oid": hashlib.sha1(data).hexdigest()})
    return [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in sorted(folders)] + entries


@contextmanager
def dataset_hub() -> Iterator[DatasetHub]:
    """Serve a dataset hub on a free loopback port for the duration of the block."""
    hub = DatasetHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def use_hub(monkeypatch: Any, endpoint: str, hub_cache: Any) -> None:
    """Point ``huggingface_hub`` and ``datasets`` at ``endpoint``, online, with downloads kept in ``hub_cache``."""
    import datasets
    from huggingface_hub import constants

    # both libraries also derive URL templates and trusted hosts from the endpoint when imported
    settings = ((constants, "ENDPOINT", endpoint), (datasets.config, "HF_ENDPOINT", endpoint),
                (constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"),
                (datasets.config, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"),
                (constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"}),
                (constants, "HF_HUB_OFFLINE", False), (datasets.config, "HF_HUB_OFFLINE", False),
                (constants, "HF_HUB_CACHE", str(hub_cache)))
    for module, name, value in settings:
        monkeypatch.setattr(module, name, value)
    if hasattr(datasets.config, "HF_HUB_CACHE"):
        monkeypatch.setattr(datasets.config, "HF_HUB_CACHE", str(hub_cache))
