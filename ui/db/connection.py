"""Opening the server database: SQLite in the workspace by default, PostgreSQL through a URL."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import peewee

from simpletuner.core.errors import SimpleTunerError
from simpletuner.ui.private_files import private_file

DEFAULT_SQLITE_NAME = "simpletuner.db"

# WAL lets request threads read while another writes; foreign keys make ON DELETE CASCADE real; the busy timeout
# makes concurrent writers (several gunicorn workers) wait for each other instead of failing at once.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "normal",
}


class DatabaseConfigError(SimpleTunerError):
    """The database URL is malformed or names a database SimpleTuner cannot use."""


def sqlite_path(workspace_root: Path) -> Path:
    """Where the default SQLite database lives."""
    return workspace_root / DEFAULT_SQLITE_NAME


def open_database(url: str | None, workspace_root: Path) -> peewee.Database:
    """A (not yet connected) peewee database for ``url``.

    ``None`` or an empty URL means SQLite in the workspace. Accepted URLs: ``sqlite:///absolute/path.db``,
    ``sqlite:///:memory:`` and ``postgresql://user:password@host:port/dbname`` (``postgres://`` too).
    """
    if not url:
        workspace_root.mkdir(parents=True, exist_ok=True)
        return _sqlite(str(sqlite_path(workspace_root)))
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "sqlite":
        path = unquote(parsed.path)
        if path in ("", "/"):
            raise DatabaseConfigError(f"database URL {url!r} names no file; write sqlite:////absolute/path.db")
        if path == "/:memory:":
            return _sqlite(":memory:")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return _sqlite(path)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url, parsed)
    raise DatabaseConfigError(
        f"unsupported database URL scheme {parsed.scheme!r} in --database-url; use postgresql://user:password@host/db "
        "or sqlite:////path/to/file.db (or leave it out for SQLite in the workspace)"
    )


def _sqlite(path: str) -> peewee.SqliteDatabase:
    if path != ":memory:":
        # created owner-only before SQLite opens it: SQLite gives its -wal and -shm files the database's mode
        private_file(Path(path))
    # IMMEDIATE transactions take the write lock up front, so two writers queue on busy_timeout instead of one
    # failing when it tries to upgrade a read lock.
    return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE", check_same_thread=False)


def _postgres(url: str, parsed: object) -> peewee.PostgresqlDatabase:
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise DatabaseConfigError(
            "PostgreSQL needs the psycopg2 driver: pip install psycopg2-binary (or pip install 'simpletuner[postgres]')"
        ) from None
    from urllib.parse import ParseResult

    assert isinstance(parsed, ParseResult)
    name = unquote(parsed.path.lstrip("/"))
    if not name:
        raise DatabaseConfigError(f"database URL {_redact(url)!r} names no database; add /dbname at the end")
    params: dict[str, object] = {}
    if parsed.hostname:
        params["host"] = unquote(parsed.hostname)
    if parsed.port:
        params["port"] = parsed.port
    if parsed.username:
        params["user"] = unquote(parsed.username)
    if parsed.password:
        params["password"] = unquote(parsed.password)
    for part in filter(None, parsed.query.split("&")):
        key, _, value = part.partition("=")
        params[unquote(key)] = unquote(value)
    return peewee.PostgresqlDatabase(name, **params)


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def database_file(database: peewee.Database) -> Path | None:
    """The file of a SQLite database; None for PostgreSQL and in-memory databases."""
    if isinstance(database, peewee.SqliteDatabase) and database.database != ":memory:":
        return Path(database.database)
    return None


def describe(database: peewee.Database) -> str:
    """A one-line description for logs, without any password."""
    if isinstance(database, peewee.SqliteDatabase):
        return f"SQLite {database.database}"
    params = getattr(database, "connect_params", {})
    host = params.get("host", "local socket")
    return f"PostgreSQL {database.database} on {host}"


#: A server connection unused for this long is checked before use: the server may have restarted meanwhile.
IDLE_CHECK_S = 1.0
_last_use = threading.local()


def connect_checked(database: peewee.Database) -> None:
    """Open this thread's connection, or reopen it when a database server dropped it (PostgreSQL restarted).

    A connection that was used within :data:`IDLE_CHECK_S` is trusted as it is, so steady traffic costs nothing;
    one idle for longer is pinged first. SQLite files cannot go away underneath a connection and are never pinged.
    """
    now = time.monotonic()
    if isinstance(database, peewee.PostgresqlDatabase) and not database.is_closed():
        if now - getattr(_last_use, "at", 0.0) > IDLE_CHECK_S:
            try:
                database.execute_sql("SELECT 1")
            except (peewee.OperationalError, peewee.InterfaceError):
                database.close()
    database.connect(reuse_if_open=True)
    _last_use.at = now
