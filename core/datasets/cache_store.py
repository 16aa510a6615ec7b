"""Content-keyed tensor caches on a data backend: one safetensors file per key, checked before it is trusted.

A key is a SHA-256 over everything that shapes the tensors (image bytes or caption, model, size, crop, encoder
settings), so a changed caption re-encodes only its embedding and a changed resolution only the latents. A file whose
header is unreadable, whose length disagrees with its header, or which names another key is treated as missing and
rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any

from simpletuner.core.interfaces import DataBackend

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
    """Tensors by key on a :class:`DataBackend` (``ab/abcdef….safetensors``)."""

    def __init__(self, backend: DataBackend) -> None:
        self.backend = backend

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

    def read(self, key: str) -> dict[str, Any]:
        """The tensors of ``key``; raises ``ValueError`` naming the file when it is damaged."""
        from safetensors.torch import load

        path = self.path_for(key)
        data = self.backend.read(path)
        if not _header_ok(data, key):
            raise ValueError(f"cache file {path} is damaged; delete it or rerun to rebuild the cache")
        return load(data)
