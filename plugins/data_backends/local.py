"""Files in a folder on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from simpletuner.core.atomic import atomic_write_bytes
from simpletuner.core.interfaces import DataBackend
from simpletuner.core.interfaces.data_backend import FileListing


def _stat_all(folder: str, names: list[str]) -> tuple[list[str], list[os.stat_result]]:
    """``os.stat`` of each of ``names`` in ``folder``, less the files removed meanwhile, relative to the open folder
    where the platform allows: the kernel then resolves one name, not the whole path, per file."""
    stat = os.stat
    kept: list[str] = []
    found: list[os.stat_result] = []
    relative = stat in os.supports_dir_fd
    try:
        descriptor = os.open(folder, os.O_RDONLY) if relative else None
    except (FileNotFoundError, NotADirectoryError):  # the folder was removed since it was listed
        return kept, found
    try:
        for name in names:
            try:
                found.append(stat(name, dir_fd=descriptor) if relative else stat(os.path.join(folder, name)))
            except FileNotFoundError:
                continue
            kept.append(name)
    finally:
        if descriptor is not None:
            os.close(descriptor)
    return kept, found


#: Per folder: its path, its relative path with a trailing ``/`` (empty for the root) and its files' names.
Folders = list[tuple[str, str, list[str]]]


def _sorted_listing(paths: list[str], sizes: list[int], stamps: list[int]) -> tuple[list[str], list[int], list[int]]:
    """The three columns ordered by path. Folders are walked in order and each one's names sorted, so the paths
    are mostly in order already (not always: ``a-b/x`` sorts before ``a/x``) and this is mostly a check."""
    if all(map(str.__lt__, paths, paths[1:])):
        return paths, sizes, stamps
    order = sorted(range(len(paths)), key=paths.__getitem__)
    return ([paths[i] for i in order], [sizes[i] for i in order] if sizes else sizes,
            [stamps[i] for i in order] if stamps else stamps)


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
        return _sorted_listing([lead + name for _, lead, names in self._walk(prefix, extensions) for name in names],
                               [], [])[0]

    def list_stamped(self, prefix: str = "", extensions: Iterable[str] | None = None) -> FileListing:
        """:meth:`list` with each file's size and modification time (ns): one ``stat`` per file, nothing read."""
        paths: list[str] = []
        sizes: list[int] = []
        stamps: list[int] = []
        for folder, lead, names in self._walk(prefix, extensions):
            names, infos = _stat_all(folder, names)
            paths += [lead + name for name in names]
            sizes += [info.st_size for info in infos]
            stamps += [info.st_mtime_ns for info in infos]
        paths, sizes, stamps = _sorted_listing(paths, sizes, stamps)
        return FileListing(paths=paths, sizes=sizes, stamps=stamps)

    def _walk(self, prefix: str, extensions: Iterable[str] | None) -> Folders:
        """(folder, its relative path with a trailing ``/``, names of its files) of every folder under
        ``prefix``, folders and names in order; hidden files and folders are skipped, links to folders are not
        followed (nor listed), as by ``os.walk``."""
        wanted = {e.lower().lstrip(".") for e in extensions} if extensions is not None else None
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        found: Folders = []
        pending = [(str(base), base.relative_to(self.root).as_posix() if base != self.root else "")]
        while pending:
            folder, relative = pending.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            lead = f"{relative}/" if relative else ""
            names: list[str] = []
            subfolders = []
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_dir():
                    if not entry.is_symlink():
                        subfolders.append((entry.path, lead + name))
                elif wanted is None or name.rpartition(".")[2].lower() in wanted:
                    names.append(name)
            names.sort()
            found.append((folder, lead, names))
            pending += sorted(subfolders, reverse=True)
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
