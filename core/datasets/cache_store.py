"""Content-keyed tensor caches on a data backend: one safetensors file per key, checked before it is trusted.

A key is a SHA-256 over everything that shapes the tensors (image bytes or caption, model, size, crop, encoder
settings), so a changed caption re-encodes only its embedding and a changed resolution only the latents. A file whose
header is unreadable, whose length disagrees with its header, or which names another key is treated as missing and
rebuilt. Which entries are complete is answered from one listing and the cache's manifest
(:mod:`simpletuner.core.datasets.cache_manifest`), opening only the files it does not vouch for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from simpletuner.core.datasets.cache_manifest import Entries, digests, listed_entries, load_manifest, save_manifest
from simpletuner.core.errors import DataBackendError
from simpletuner.core.interfaces import DataBackend

logger = logging.getLogger(__name__)

_KEY_FIELD = "simpletuner_cache_key"


def cache_key(**parts: Any) -> str:
    """A stable SHA-256 of JSON-serialisable parts (sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _header_ok(data: bytes, key: str) -> bool:
    if len(data) < 8:
        return False
    (length,) = struct.unpack("<Q", data[:8])
    if length <= 0 or 8 + length > len(data):
        return False
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError:
        return False
    if not isinstance(header, dict) or header.get("__metadata__", {}).get(_KEY_FIELD) != key:
        return False
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    return 8 + length + max(ends, default=0) == len(data)


class CacheStore:
    """Tensors by key on a :class:`DataBackend` (``ab/abcdef….safetensors``), with the cache's manifest (see
    :mod:`simpletuner.core.datasets.cache_manifest`) saying which entries are known complete."""

    def __init__(self, backend: DataBackend) -> None:
        self.backend = backend
        self._written: dict[str, int] = {}  # key → bytes, written by this process since the manifest was saved
        self._lock = threading.Lock()

    def valid(self, keys: Sequence[str], threads: int = 4, record: bool = True) -> np.ndarray:
        """Which of ``keys`` (hex) have a complete entry: :meth:`valid_digests` of their digests."""
        return self.valid_digests(digests(keys), threads=threads, record=record)

    def valid_digests(self, wanted: np.ndarray, threads: int = 4, record: bool = True) -> np.ndarray:
        """Which of ``wanted`` (an ``S32`` array of key digests) have a complete entry, from one listing of the
        cache and its manifest: only files the manifest does not know (or whose size or stamp changed) are
        opened. With ``record``, the manifest keeps its entries whose files are unchanged and gains those just
        verified."""
        listed = listed_entries(self.backend)
        known = load_manifest(self.backend)
        kept = known.unchanged_in(listed)  # recorded entries whose files are listed as they were recorded
        where = listed.find(wanted)
        row = np.maximum(where, 0)
        present = where >= 0
        trusted = present & (kept.find(wanted) >= 0)
        if len(listed):
            trusted &= listed.stamps[row] != 0  # a backend that cannot tell changes: always verified
        unknown = np.flatnonzero(present & ~trusted)
        valid = trusted.copy()
        if len(unknown):
            with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
                valid[unknown] = list(pool.map(lambda i: self.is_valid(wanted[i : i + 1].tobytes().hex()),
                                               unknown.tolist()))
        if record:
            new = unknown[valid[unknown]]
            if len(new) or len(kept) != len(known):
                self._save(kept.merged(Entries(wanted[new], listed.sizes[row[new]], listed.stamps[row[new]])))
        return valid

    def record_written(self) -> int:
        """Add the entries this process wrote to the manifest (from one listing: nothing is read); returns how
        many were recorded."""
        with self._lock:
            written, self._written = self._written, {}
        if not written:
            return 0
        keys = list(written)
        wanted = digests(keys)
        listed = listed_entries(self.backend)
        where = listed.find(wanted)
        sizes = np.array([written[k] for k in keys], dtype=np.int64)
        row = np.maximum(where, 0)
        ok = (where >= 0) & (listed.sizes[row] == sizes)
        self._save(load_manifest(self.backend).merged(Entries(wanted[ok], sizes[ok], listed.stamps[row[ok]])))
        return int(ok.sum())

    def forget(self, key: str) -> None:
        """Drop ``key`` from the manifest (its file was found damaged): the next check verifies it again."""
        manifest = load_manifest(self.backend)
        gone = digests([key])
        if (manifest.find(gone) >= 0).any():
            self._save(manifest.without(gone))

    def _save(self, entries: Entries) -> None:
        try:
            save_manifest(self.backend, entries)
        except (OSError, DataBackendError) as exc:  # a read-only cache: checks stay correct, only slower
            logger.warning("could not store the cache manifest (%s); the next start verifies the cache again", exc)

    @staticmethod
    def path_for(key: str) -> str:
        """The relative path of a key's file."""
        return f"{key[:2]}/{key}.safetensors"

    def is_valid(self, key: str) -> bool:
        """Whether a complete, uncorrupted file for ``key`` exists."""
        path = self.path_for(key)
        if not self.backend.exists(path):
            return False
        try:
            return _header_ok(self.backend.read(path), key)
        except OSError:
            return False

    def write(self, key: str, tensors: Mapping[str, Any]) -> None:
        """Store tensors atomically under ``key``."""
        from safetensors.torch import save

        data = save({name: t.detach().contiguous().cpu() for name, t in tensors.items()}, metadata={_KEY_FIELD: key})
        self.backend.write(self.path_for(key), data)
        with self._lock:
            self._written[key] = len(data)

    def read(self, key: str) -> dict[str, Any]:
        """The tensors of ``key``; raises ``ValueError`` naming the file when it is damaged."""
        from safetensors.torch import load

        path = self.path_for(key)
        try:
            data = self.backend.read(path)
        except FileNotFoundError:
            data = b""
        if not _header_ok(data, key):
            self.forget(key)
            raise ValueError(f"cache file {path} is missing or damaged; run again to rebuild it")
        return load(data)
