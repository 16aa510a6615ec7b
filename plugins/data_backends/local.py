"""Files in a folder on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from simpletuner.core.atomic import atomic_write_bytes
from simpletuner.core.interfaces import DataBackend
from simpletuner.core.interfaces.data_backend import FileListing


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
        return [path for path, _ in self._walk(prefix, extensions)]

    def list_stamped(self, prefix: str = "", extensions: Iterable[str] | None = None) -> FileListing:
        """:meth:`list` with each file's size and modification time (ns): one ``stat`` per file, nothing read."""
        paths, sizes, stamps = [], [], []
        for path, entry in self._walk(prefix, extensions):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # removed while listing
                continue
            paths.append(path)
            sizes.append(stat.st_size)
            stamps.append(stat.st_mtime_ns)
        return FileListing(paths=paths, sizes=sizes, stamps=stamps)

    def _walk(self, prefix: str, extensions: Iterable[str] | None) -> list[tuple[str, os.DirEntry[str]]]:
        """(relative path, directory entry) of the files under ``prefix``, sorted by path."""
        wanted = {e.lower().lstrip(".") for e in extensions} if extensions is not None else None
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        found: list[tuple[str, os.DirEntry[str]]] = []
        pending = [(str(base), base.relative_to(self.root).as_posix() if base != self.root else "")]
        while pending:
            folder, relative = pending.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                path = f"{relative}/{name}" if relative else name
                if entry.is_dir():
                    if not entry.is_symlink():  # links to folders are not followed (nor listed), as by os.walk
                        pending.append((entry.path, path))
                elif wanted is None or name.rsplit(".", 1)[-1].lower() in wanted:
                    found.append((path, entry))
        found.sort(key=lambda item: item[0])
        return found

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
