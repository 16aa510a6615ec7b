"""A real OpenID Connect provider for tests: ``oidc-provider-mock`` run as its own process on loopback."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

#: Users the provider knows, with the claims it hands out.
USERS = [
    {"sub": "u-ada", "preferred_username": "ada", "email": "ada@example.org", "email_verified": True,
     "name": "Ada Lovelace", "groups": ["ml-team", "admins"]},
    {"sub": "u-bob", "preferred_username": "bob", "email": "bob@example.org", "email_verified": False,
     "name": "Bob Builder", "realm_access": {"roles": ["viewer"]}},
]


def missing_package() -> str | None:
    """Why the provider cannot run here, or None when it can."""
    if importlib.util.find_spec("oidc_provider_mock") is None:
        return "oidc-provider-mock is not installed (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_oidc_provider(log: Path, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Run the provider until the block ends; yields its issuer URL (always addressed as 127.0.0.1, because the
    provider names itself after the Host header)."""
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port), *extra_args]
    for user in USERS:
        args += ["--user-claims", json.dumps(user)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"oidc-provider-mock exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("oidc-provider-mock did not answer within 30 s")
            time.sleep(0.05)
        yield issuer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
