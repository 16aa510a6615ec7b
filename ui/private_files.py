"""Files only the server's own user may read: the SQLite database (and its ``-wal``/``-shm``/``-journal``), the
server log (it holds the setup token), the self-signed TLS key and stored tokens.

They are created with mode 0600, in folders of mode 0700, whatever the umask; :func:`tighten_workspace` runs at
server start and takes group and other access away from any of them an earlier version, a restored backup or
another tool left open.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from simpletuner.core.workspace import Workspace

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
#: Folders of the workspace that hold nothing but private files.
PRIVATE_FOLDERS = ("logs", "tls", "secrets")
#: Files SQLite keeps beside a database.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) and give it mode 0700; returns it."""
    path.mkdir(parents=True, exist_ok=True)
    _restrict(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if it is missing, never truncating it, and give it mode 0600; returns it."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE))
    _restrict(path, PRIVATE_FILE)
    return path


def append_private(path: Path) -> TextIO:
    """``path`` opened for appending text, created 0600 in a 0700 folder if missing, tightened if not."""
    private_dir(path.parent)
    handle = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE), "a",
                       encoding="utf-8")
    os.fchmod(handle.fileno(), PRIVATE_FILE)
    return handle


def tighten_workspace(workspace: Workspace, database_file: Path | None) -> list[Path]:
    """Take group and other access away from the workspace's private folders and files and from the SQLite
    database ``database_file`` and its companions (None for PostgreSQL); returns what was changed."""
    changed = []
    for path, mode in _private_paths(workspace, database_file):
        if _restrict(path, mode):
            changed.append(path)
    return changed


def _private_paths(workspace: Workspace, database_file: Path | None) -> Iterator[tuple[Path, int]]:
    if database_file is not None:
        for suffix in ("", *SQLITE_COMPANIONS):
            yield Path(f"{database_file}{suffix}"), PRIVATE_FILE
    for name in PRIVATE_FOLDERS:
        folder = workspace.root / name
        if not folder.is_dir() or folder.is_symlink():
            continue
        yield folder, PRIVATE_DIR
        for parent, folders, files in os.walk(folder):
            for child in folders:
                yield Path(parent, child), PRIVATE_DIR
            for child in files:
                yield Path(parent, child), PRIVATE_FILE


def _restrict(path: Path, mode: int) -> bool:
    """Give a plain file or folder exactly ``mode``; links are left alone, since changing one would change its
    target. Returns whether anything changed."""
    try:
        current = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(current) or stat.S_IMODE(current) == mode:
        return False
    os.chmod(path, mode)
    return True
