"""The manifest of a tensor cache: which entries are known complete, so that a start checks a cache from one listing
instead of opening every file.

The manifest (``cache-manifest.npz`` at the cache's root) records, per entry verified or written, its key and the
size and change stamp its file had then (see :class:`~simpletuner.core.interfaces.data_backend.FileListing`). A
check lists the cache once (one directory scan, or an object listing) and trusts an entry whose file is listed with
the recorded size and stamp; a file that is new to the manifest, or whose size or stamp changed, is opened and
verified once, then recorded. A missing file is missing. Damage that keeps the size and stamp is caught when the
entry is read: the reader drops it from the manifest, so the next check verifies the file and the next run rebuilds
it. A damaged or foreign manifest is ignored (every listed file is verified once).

Keys are held as 32-byte digests in sorted NumPy arrays: 48 bytes per entry in memory.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Sequence

import attrs
import numpy as np

from simpletuner.core.interfaces import DataBackend

logger = logging.getLogger(__name__)

MANIFEST_FILE = "cache-manifest.npz"
SUFFIX = ".safetensors"
MANIFEST_VERSION = 1


@attrs.define(eq=False)
class Entries:
    """Cache entries as parallel arrays sorted by key: 32-byte keys, file sizes and change stamps."""

    keys: np.ndarray  # (n,) "S32"
    sizes: np.ndarray  # (n,) int64
    stamps: np.ndarray  # (n,) int64

    @classmethod
    def empty(cls) -> Entries:
        """No entries."""
        return cls(np.zeros(0, dtype="S32"), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    @classmethod
    def of(cls, keys: np.ndarray, sizes: np.ndarray, stamps: np.ndarray) -> Entries:
        """Entries from unsorted arrays (the last of repeated keys wins)."""
        order = np.argsort(keys, kind="stable")
        keys, sizes, stamps = keys[order], sizes[order], stamps[order]
        last = np.ones(len(keys), dtype=bool)
        if len(keys):
            last[:-1] = keys[1:] != keys[:-1]
        return cls(keys[last], sizes[last], stamps[last])

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Row of each of ``keys`` (-1 where absent)."""
        if not len(self.keys):
            return np.full(len(keys), -1, dtype=np.int64)
        rows = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[rows] == keys, rows, -1).astype(np.int64)

    def unchanged_in(self, listed: Entries) -> Entries:
        """Those of these entries that ``listed`` holds with the same size and stamp."""
        if not len(listed):
            return Entries.empty()
        rows = listed.find(self.keys)
        at = np.maximum(rows, 0)
        same = (rows >= 0) & (listed.sizes[at] == self.sizes) & (listed.stamps[at] == self.stamps)
        return Entries(self.keys[same], self.sizes[same], self.stamps[same])

    def merged(self, other: Entries) -> Entries:
        """These entries updated with ``other``'s."""
        return Entries.of(np.concatenate([self.keys, other.keys]), np.concatenate([self.sizes, other.sizes]),
                          np.concatenate([self.stamps, other.stamps]))

    def without(self, keys: np.ndarray) -> Entries:
        """These entries less ``keys``."""
        keep = ~np.isin(self.keys, keys)
        return Entries(self.keys[keep], self.sizes[keep], self.stamps[keep])


def digests(keys: Sequence[str]) -> np.ndarray:
    """Hex keys as an array of 32-byte digests."""
    return np.array([bytes.fromhex(k) for k in keys], dtype="S32")


def listed_entries(backend: DataBackend) -> Entries:
    """The cache files on ``backend`` (``ab/<key>.safetensors``) with their sizes and stamps, from one listing."""
    listing = backend.list_stamped(extensions={SUFFIX.lstrip(".")})
    keys, sizes, stamps = [], [], []
    for path, size, stamp in zip(listing.paths, listing.sizes, listing.stamps, strict=True):
        name = path.rsplit("/", 1)[-1].removesuffix(SUFFIX)
        if len(name) != 64:
            continue
        try:
            keys.append(bytes.fromhex(name))
        except ValueError:
            continue
        sizes.append(size)
        stamps.append(stamp)
    return Entries.of(np.array(keys, dtype="S32"), np.array(sizes, dtype=np.int64), np.array(stamps, dtype=np.int64))


def load_manifest(backend: DataBackend) -> Entries:
    """The stored manifest; empty when there is none or it cannot be trusted."""
    try:
        data = backend.read(MANIFEST_FILE)
    except FileNotFoundError:
        return Entries.empty()
    except OSError as exc:
        logger.warning("cache manifest unreadable (%s); every cache file is verified once", exc)
        return Entries.empty()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            if int(stored["version"][0]) != MANIFEST_VERSION:
                return Entries.empty()
            keys, sizes, stamps = stored["keys"], stored["sizes"], stored["stamps"]
        if keys.dtype != np.dtype("S32") or not len(keys) == len(sizes) == len(stamps):
            raise ValueError("columns of unexpected type or length")
        return Entries.of(keys, sizes.astype(np.int64), stamps.astype(np.int64))
    except (ValueError, KeyError, OSError, EOFError, TypeError, zipfile.BadZipFile) as exc:
        logger.warning("cache manifest is damaged (%s); every cache file is verified once", exc)
        return Entries.empty()


def save_manifest(backend: DataBackend, entries: Entries) -> None:
    """Write the manifest atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, version=np.array([MANIFEST_VERSION], dtype=np.int64), keys=entries.keys, sizes=entries.sizes,
             stamps=entries.stamps)
    backend.write(MANIFEST_FILE, buffer.getvalue())
