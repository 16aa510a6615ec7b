"""The DataBackend interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import attrs


@attrs.frozen
class FileListing:
    """Files of a backend with what tells whether each changed: three lists of the same length, sorted by path.

    ``stamps`` holds, per file, a number that changes whenever its content may have changed (a modification time in
    nanoseconds, a digest of an object's ETag, ...); 0 means unknown, so the file is read again on every scan.
    ``sizes`` holds byte sizes (-1 where unknown).
    """

    paths: list[str]
    sizes: list[int]
    stamps: list[int]


class DataBackend(ABC):
    """Storage of a dataset's images, captions and caches, addressed by ``/``-separated relative paths.

    Example (an in-memory backend)::

        >>> class MemoryBackend(DataBackend):
        ...     def __init__(self): self.files = {}
        ...     def list(self, prefix="", extensions=None):
        ...         return sorted(p for p in self.files if p.startswith(prefix)
        ...                       and (extensions is None or p.rsplit(".", 1)[-1].lower() in extensions))
        ...     def read(self, path): return self.files[path]
        ...     def write(self, path, data): self.files[path] = bytes(data)
        ...     def exists(self, path): return path in self.files
        ...     def delete(self, path): self.files.pop(path, None)
        >>> backend = MemoryBackend()
        >>> backend.write("cats/1.png", b"...")
        >>> backend.list("cats/", extensions={"png"})
        ['cats/1.png']
    """

    @abstractmethod
    def list(self, prefix: str = "", extensions: Iterable[str] | None = None) -> list[str]:
        """Relative paths of files under ``prefix`` (recursively), filtered by lowercase extensions, sorted."""

    @abstractmethod
    def read(self, path: str) -> bytes:
        """The bytes of a file; raises ``FileNotFoundError`` if absent."""

    @abstractmethod
    def write(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path`` atomically (readers see old or new content, never a partial file)."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """Whether a file exists at ``path``."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove a file; no error if it is absent."""

    def check(self) -> None:
        """Cheaply confirm the storage is reachable and usable before heavy work (config check, training start).

        Raises :class:`~simpletuner.core.errors.DataBackendError` with a one-line message naming the problem and
        the fix. The default does nothing: a local folder's problems show up in the datasets file check.
        """
        return None

    def image_sizes(self, paths: Sequence[str]) -> Sequence[tuple[int, int] | None]:
        """Each image's (width, height) where the storage knows it without reading the image (a dataset's width and
        height columns, say); None where it does not. The default knows none.

        With ``vae_cache_ondemand`` a scan trusts these sizes and reads none of those images: they are first read
        when training encodes them (their cache keys then come from the listing's change stamps).
        """
        return [None] * len(paths)

    def list_stamped(self, prefix: str = "", extensions: Iterable[str] | None = None) -> FileListing:
        """:meth:`list` with each file's size and change stamp, so a dataset scan re-reads only changed files.

        The default knows neither (every file counts as changed); backends that can tell cheaply (a directory
        listing with ``stat``, an object listing) override it.
        """
        paths = self.list(prefix, extensions)
        return FileListing(paths=paths, sizes=[-1] * len(paths), stamps=[0] * len(paths))
