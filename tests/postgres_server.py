"""A private PostgreSQL server for a test run: ``initdb`` on a temporary data folder, its own port and socket folder,
no durability (fsync off), run as the ``postgres`` OS user when the tests run as root (initdb refuses root)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Where Debian installs each major version's server binaries.
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


def find_bin_dir() -> Path | None:
    """The binaries of the highest PostgreSQL major version installed (Debian's layout), or None."""
    versions = [p for p in DEBIAN_PG_ROOT.glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()]
    return max(versions, key=lambda p: int(p.parent.name), default=None)


def missing() -> str | None:
    """Why a PostgreSQL server cannot run here, or None when it can."""
    if find_bin_dir() is None:
        return f"PostgreSQL server binaries not found in {DEBIAN_PG_ROOT}/*/bin (apt-get install postgresql)"
    if importlib.util.find_spec("psycopg2") is None:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresInstance:
    """A private PostgreSQL server on a loopback port: its URL, and a restart that keeps its data and port."""

    def __init__(self, bin_dir: Path, root: Path, port: int, run_as: dict[str, Any]) -> None:
        self.bin_dir, self.root, self.port, self.run_as = bin_dir, root, port, run_as
        self.url = f"postgresql://st@127.0.0.1:{port}/base"

    def _ctl(self, *args: str) -> None:
        subprocess.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), *args], check=True,
                       capture_output=True, timeout=90, **self.run_as)

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c synchronous_commit=off")
        self._ctl("-o", options, "-w", "-t", "60", "-l", str(self.root / "log"), "start")

    def stop(self) -> None:
        """Stop as an operator's restart does: every client connection is dropped, committed data is kept (the
        instance runs without synchronous commits, so an immediate stop could lose the last transactions)."""
        self._ctl("-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def run_postgres_instance() -> Iterator[PostgresInstance]:
    """Run a server until the block ends, with an empty database ``base`` for the user ``st``."""
    bin_dir = find_bin_dir()
    assert bin_dir is not None, missing()
    root = Path(tempfile.mkdtemp(prefix="st-pg-"))
    (root / "sock").mkdir()
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "sock", "postgres")
        run_as = {"user": "postgres"}
    instance = PostgresInstance(bin_dir, root, _free_port(), run_as)
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "st", "--no-sync"],
                       check=True, capture_output=True, timeout=120, **run_as)
        instance.start()
        try:
            subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(instance.port), "-U", "st",
                            "base"], check=True, capture_output=True, timeout=60, **run_as)
            yield instance
        finally:
            subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60, **run_as)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def run_postgres() -> Iterator[str]:
    """Run a server until the block ends; yields the URL of its (empty) database ``base`` for the user ``st``."""
    with run_postgres_instance() as instance:
        yield instance.url


def create_database(server_url: str) -> str:
    """A new, empty database on the server; returns its URL."""
    import psycopg2

    name = f"t{time.time_ns()}"
    conn = psycopg2.connect(server_url)
    try:
        conn.autocommit = True
        conn.cursor().execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    return server_url.rsplit("/", 1)[0] + "/" + name
