"""Files in a folder on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from simpletuner.core.atomic import atomic_write_bytes
from simpletuner.core.interfaces import DataBackend


class LocalDataBackend(DataBackend):
    """A :class:`DataBackend` rooted at a folder; paths may not leave it.

    >>> import tempfile
    >>> backend = LocalDataBackend(tempfile.mkdtemp())
    >>> backend.write("a/b.txt", b"hi")
    >>> backend.list(extensions={"txt"}), backend.read("a/b.txt"), backend.exists("a/c.txt")
    (['a/b.txt'], b'hi', False)
    """

    def __init__(self, root: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> None:
        # a local folder has no options of its own; ``options`` is the entry's (empty) backend options
        self.root = Path(root).resolve()

    def _path(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if path != self.root and self.root not in path.parents:
            raise ValueError(f"path {relative!r} leaves the dataset folder {self.root}")
        return path

    def list(self, prefix: str = "", extensions: Iterable[str] | None = None) -> list[str]:
        """Files under ``prefix``, recursively, sorted; hidden files and folders are skipped."""
        wanted = {e.lower().lstrip(".") for e in extensions} if extensions is not None else None
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if name.startswith("."):
                    continue
                if wanted is not None and name.rsplit(".", 1)[-1].lower() not in wanted:
                    continue
                found.append((Path(folder) / name).relative_to(self.root).as_posix())
        return sorted(found)

    def read(self, path: str) -> bytes:
        """The file's bytes."""
        return self._path(path).read_bytes()

    def write(self, path: str, data: bytes) -> None:
        """Write atomically, creating folders."""
        atomic_write_bytes(self._path(path), bytes(data))

    def exists(self, path: str) -> bool:
        """Whether the file exists."""
        return self._path(path).is_file()

    def delete(self, path: str) -> None:
        """Remove the file if present."""
        self._path(path).unlink(missing_ok=True)
