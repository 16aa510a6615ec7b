"""Files holding secrets are the server user's alone: created 0600 in 0700 folders whatever the umask, and tightened
at server start when found open to others."""

from __future__ import annotations

import json
import os
import stat
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from simpletuner.ui.tls import ensure_self_signed

from .conftest import PASSWORD, LiveUi

pytestmark = pytest.mark.timeout(240)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def first_admin(url: str) -> None:
    request = urllib.request.Request(url + "/api/auth/setup/first-admin", method="POST", headers={
        "Content-Type": "application/json"}, data=json.dumps({"username": "root", "email": "root@example.org",
                                                               "password": PASSWORD}).encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 201


def test_secrets_are_owner_only_whatever_the_umask_and_tightened_at_start(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    with umask(0):  # the server inherits it: without care, everything it creates would be world-readable
        server = LiveUi(workspace)
    try:
        first_admin(server.url)  # writes the database (and its write-ahead log)
        database = workspace / "simpletuner.db"
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"), workspace / "logs" / "server.log"):
            assert mode(path) == 0o600, path
        assert mode(workspace / "logs") == 0o700
        assert "Setup token" in (workspace / "logs" / "server.log").read_text()
    finally:
        server.stop()

    # What an older version, a restored backup or another tool may leave behind
    loose = [database, Path(f"{database}-wal"), workspace / "logs" / "server.log"]
    Path(f"{database}-wal").touch()  # an empty write-ahead log, as a crash can leave (SQLite ignores it)
    (workspace / "tls").mkdir()
    (workspace / "secrets" / "hf-hub").mkdir(parents=True)
    for path in (workspace / "tls" / "server.key", workspace / "secrets" / "hf-hub" / "1.token"):
        path.write_text("secret\n")
        loose.append(path)
    for path in loose:
        os.chmod(path, 0o644)
    for folder in (workspace / "logs", workspace / "tls", workspace / "secrets", workspace / "secrets" / "hf-hub"):
        os.chmod(folder, 0o755)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    (workspace / "secrets" / "link").symlink_to(outside)

    server = LiveUi(workspace)
    try:
        with urllib.request.urlopen(server.url + "/health", timeout=30) as answer:
            assert answer.status == 200
        for path in loose:
            assert mode(path) == 0o600, path
        for folder in (workspace / "logs", workspace / "tls", workspace / "secrets", workspace / "secrets" / "hf-hub"):
            assert mode(folder) == 0o700, folder
        assert mode(outside) == 0o644  # a link's target is not the server's to change
        assert (workspace / "secrets" / "hf-hub" / "1.token").read_text() == "secret\n"  # user 1 exists: kept
    finally:
        server.stop()
    assert "readable by this user only" in (workspace / "logs" / "server.log").read_text()


def test_the_self_signed_key_is_made_owner_only(tmp_path: Path) -> None:
    with umask(0):
        cert, key, created = ensure_self_signed(tmp_path)
    assert created and mode(key) == 0o600 and mode(key.parent) == 0o700
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
