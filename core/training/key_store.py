"""A dataset's latent keys kept between runs, beside its index.

A sample's latent key is a function of its image digest, its placement (bucket, resized size, crop origin) and the
VAE's source, and making it costs a SHA-256 per image on every start. The keys are therefore stored with a digest of
everything they were made from: a start whose inputs hash the same (one pass over a few arrays) reads them back,
and any change (a new image, another resolution, another VAE) makes them again. The file is read without pickle; a
damaged or foreign one is made again, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from typing import Any

import numpy as np

from simpletuner.core.datasets.scan import IndexFile, ScannedDataset
from simpletuner.core.errors import DataBackendError
from simpletuner.core.training.caching import latent_key_column

logger = logging.getLogger(__name__)

#: Bumped whenever the way latent keys are made changes.
KEYS_VERSION = 1


def inputs_digest(dataset: ScannedDataset, model: Any) -> bytes:
    """A SHA-256 of everything the latent keys of ``dataset`` are made from."""
    placements = dataset.placements
    digest = hashlib.sha256(f"{KEYS_VERSION}\0{json.dumps(model, default=str)}\0".encode())
    digest.update("\0".join(placements.names).encode("utf-8", "surrogateescape"))
    for column in (dataset.table.digest[dataset.rows], placements.bucket, placements.resized, placements.origin):
        array = np.ascontiguousarray(column)
        digest.update(f"\0{array.dtype.str}{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.digest()


def keys_path(index: IndexFile) -> str:
    """Where the latent keys of the dataset indexed at ``index`` are kept."""
    return index.path.removesuffix(".npz") + ".latent-keys.npz"


def latent_keys_of(dataset: ScannedDataset, model: Any, index: IndexFile | None) -> np.ndarray:
    """The latent key of every sample of ``dataset`` (as :func:`~simpletuner.core.training.caching.latent_key_column`
    makes them), read from beside its ``index`` when they were made from the same inputs, else made (and stored
    when ``index`` is writable)."""
    if index is None:
        return latent_key_column(dataset, model)
    inputs = inputs_digest(dataset, model)
    path = keys_path(index)
    stored = _load(index, path, inputs, len(dataset.rows))
    if stored is not None:
        return stored
    keys = latent_key_column(dataset, model)
    if index.writable:
        buffer = io.BytesIO()
        np.savez(buffer, inputs=np.frombuffer(inputs, dtype=np.uint8), keys=keys.view(np.uint8))
        try:
            index.backend.write(path, buffer.getvalue())
        except (OSError, DataBackendError) as exc:  # a read-only cache costs the next start a SHA-256 per image
            logger.warning("could not store the latent keys of dataset %s (%s)", dataset.entry.id, exc)
    return keys


def _load(index: IndexFile, path: str, inputs: bytes, count: int) -> np.ndarray | None:
    try:
        data = index.backend.read(path)
    except FileNotFoundError:
        return None
    except (OSError, DataBackendError) as exc:
        logger.warning("latent keys %s unreadable (%s); making them again", path, exc)
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            if stored["inputs"].tobytes() != inputs:
                return None
            keys = stored["keys"]
        if keys.dtype != np.uint8 or keys.shape != (count * 32,):
            raise ValueError(f"keys of shape {keys.shape} and type {keys.dtype}")
        return np.array(keys).view("S32")
    except (ValueError, KeyError, OSError, EOFError, TypeError, zipfile.BadZipFile) as exc:
        logger.warning("latent keys %s are damaged (%s); making them again", path, exc)
        return None
