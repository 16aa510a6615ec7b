"""Putting checked upload files into a datasets folder without following or replacing a link already there.

A folder in the datasets tree may hold symbolic links made on the server (``mine/link -> /etc``). An upload named
``link/x.txt`` must not write through such a link, and ``a.png`` must not replace a link ``a.png`` (whose target
whoever made it may rely on). Every folder of a destination is therefore opened one component at a time relative to
the previous one, refusing links (``O_NOFOLLOW``), and files are hard-linked into place, which never replaces an
existing name, so the checks and the writes see the same filesystem objects.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from simpletuner.core.errors import SimpleTunerError

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
#: Errors of ``link`` on filesystems without hard links (some network and FAT-style ones).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}


class PlacementError(SimpleTunerError):
    """A destination is blocked: a link or a file where a folder is needed, or a name that already exists."""


def blocked(folder: Path, parts: Sequence[str]) -> str | None:
    """Why ``folder/parts...`` cannot receive a new file (a link or file on the way, or the name taken), else None;
    looks without changing anything, so a whole archive can be refused before any of it is moved."""
    current = folder
    for index, part in enumerate(parts):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return None
        shown = "/".join(parts[:index + 1])
        if stat.S_ISLNK(mode):
            return _is_link(shown)
        if index == len(parts) - 1:
            return f"{shown!r} already exists in this folder"
        if not stat.S_ISDIR(mode):
            return _is_file(shown)
    return None


def _is_link(shown: str) -> str:
    return f"{shown!r} in this folder is a symbolic link; uploads never write through or over a link"


def _is_file(shown: str) -> str:
    return f"{shown!r} in this folder is a file, not a folder"


def place(source: Path, folder: Path, parts: Sequence[str]) -> None:
    """Hard-link the file ``source`` to ``folder/parts...``, making missing folders; :class:`PlacementError` when a
    link or a file is in the way or the name exists. The caller removes ``source`` afterwards."""
    fd = os.open(folder, _DIRECTORY)
    try:
        for index, part in enumerate(parts[:-1]):
            try:
                os.mkdir(part, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                inner = os.open(part, _DIRECTORY, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                shown = "/".join(parts[:index + 1])
                is_link = stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode)
                raise PlacementError(_is_link(shown) if is_link else _is_file(shown)) from None
            os.close(fd)
            fd = inner
        _link(source, parts[-1], fd, "/".join(parts))
    finally:
        os.close(fd)


def _link(source: Path, name: str, folder_fd: int, shown: str) -> None:
    try:
        os.link(source, name, dst_dir_fd=folder_fd)
        return
    except FileExistsError:
        raise PlacementError(f"{shown!r} already exists in this folder (a file or a link)") from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    # Without hard links, look first and rename: only a concurrent local process could slip a link in between.
    try:
        os.lstat(name, dir_fd=folder_fd)
    except FileNotFoundError:
        os.rename(source, name, dst_dir_fd=folder_fd)
        return
    raise PlacementError(f"{shown!r} already exists in this folder (a file or a link)")
