"""The run's data: scanned datasets, their cache keys and stores, and the epoch planner.

Every per-sample fact is held in arrays: a dataset's cache keys are two columns of 32-byte digests (its latents'
and its caption's), and the jobs of caching are made only for the entries found missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from simpletuner.core.config.datasets import DatasetEntry, default_text_embeds
from simpletuner.core.datasets.cache_store import CacheStore
from simpletuner.core.datasets.scan import IndexFile, ScannedDataset
from simpletuner.core.datasets.storage import DatasetStorage
from simpletuner.core.training.caching import LatentJob, TextJob, text_key_column, text_keys
from simpletuner.core.training.key_store import latent_keys_of
from simpletuner.core.training.ondemand import OnDemandLatents
from simpletuner.core.training.sampler import DatasetPlan, EpochPlanner


def hex_key(keys: np.ndarray, index: int) -> str:
    """Row ``index`` of a column of 32-byte digests, as the hex key the cache stores use (read through the bytes:
    a NumPy ``S32`` item would lose trailing zero bytes)."""
    return keys[index : index + 1].tobytes().hex()


@attrs.frozen(eq=False)
class DatasetCaches:
    """One dataset's caches: where its latents and caption embeddings are kept and each sample's two keys."""

    dataset: ScannedDataset
    latent_store: CacheStore
    latent_keys: np.ndarray  # (n,) "S32": latent key of each sample
    text_store: CacheStore
    text_keys: np.ndarray  # (n,) "S32": text key of each sample's caption

    def latent_job(self, index: int) -> LatentJob:
        """The caching job of sample ``index``'s latents."""
        return LatentJob(self.dataset.sample(index), self.dataset, self.latent_store, hex_key(self.latent_keys, index))

    def text_job(self, index: int) -> TextJob:
        """The caching job of sample ``index``'s caption embedding (its caption is read only if it is encoded)."""
        return TextJob(partial(self.dataset.caption, index), self.text_store, hex_key(self.text_keys, index))

    @property
    def nbytes(self) -> int:
        """Bytes of per-sample keys held."""
        return int(self.latent_keys.nbytes + self.text_keys.nbytes)


@attrs.define
class TrainingData:
    """Scanned datasets with the cache keys of every sample's latents and caption, and the epoch planner."""

    datasets: list[ScannedDataset]
    caches: list[DatasetCaches]
    empty_text: TextJob
    planner: EpochPlanner
    #: the latents left to encode while training (``vae_cache_ondemand``), set by the caching stage
    ondemand: OnDemandLatents | None = None

    def latent_entry(self, dataset: int, index: int) -> tuple[CacheStore, str]:
        """(store, key) of the latents of sample ``index`` of dataset ``dataset``."""
        caches = self.caches[dataset]
        return caches.latent_store, hex_key(caches.latent_keys, index)

    def text_entry(self, dataset: int, index: int) -> tuple[CacheStore, str]:
        """(store, key) of the caption embedding of sample ``index`` of dataset ``dataset``."""
        caches = self.caches[dataset]
        return caches.text_store, hex_key(caches.text_keys, index)

    @property
    def nbytes(self) -> int:
        """Bytes of per-image bookkeeping held for the run: index tables, placements, cache keys and the epoch plan
        (the planner's bucket codes are the placements' own array)."""
        return int(sum(d.nbytes for d in self.datasets) + sum(c.nbytes for c in self.caches) + self.planner.nbytes)


def _empty_caption() -> str:
    return ""


def build_training_data(
    scanned: Sequence[ScannedDataset],
    entries: Sequence[DatasetEntry],
    storage: DatasetStorage,
    *,
    cache_root: Path,
    vae_source: str,
    text_source: str,
    family: Any,
    batch_size: int,
    world_size: int,
    seed: int,
    oversubscribe: bool,
    accumulation: int = 1,
    index_for: Callable[[DatasetEntry], IndexFile | None] | None = None,
) -> TrainingData:
    """Attach cache stores and keys to the scanned datasets and plan their batches (latent keys are kept beside
    each dataset's index, where ``index_for`` names one: :mod:`simpletuner.core.training.key_store`).

    Latents go to each dataset's ``cache_dir_vae`` (``cache_root/vae/<id>`` when unset); embeddings to the
    ``cache_dir`` of the dataset's text_embeds entry (``cache_root/text/<id>`` when unset); see
    :mod:`simpletuner.core.datasets.storage` for which backend holds each.
    """
    embeds_by_id = {e.id: e for e in entries if e.dataset_type == "text_embeds" and not e.disabled}
    default_embeds = default_text_embeds(entries)
    text_stores: dict[str, CacheStore] = {}

    def text_store(entry: DatasetEntry) -> CacheStore:
        embeds = embeds_by_id[entry.text_embeds] if entry.text_embeds else default_embeds
        assert embeds is not None, "the datasets file check guarantees a text_embeds dataset"
        if embeds.id not in text_stores:
            text_stores[embeds.id] = CacheStore(storage.text_embeds(embeds, cache_root))
        return text_stores[embeds.id]

    text_key = text_keys(text_source, family.spec.name, family.text_cache_settings())
    caches = []
    for dataset in scanned:
        entry = dataset.entry
        # keyed by the captions' digests from the index: no caption file is read unless its embedding is missing
        caption_digests = dataset.table.caption_digest[dataset.rows]
        caches.append(DatasetCaches(dataset, CacheStore(storage.latents(entry, cache_root)),
                                    latent_keys_of(dataset, vae_source, index_for(entry) if index_for else None),
                                    text_store(entry),
                                    text_key_column(caption_digests, text_key)))
    first_store = text_store(scanned[0].entry)
    empty = TextJob(_empty_caption, first_store, text_key(hashlib.sha256(b"").hexdigest()))
    planner = EpochPlanner(
        datasets=[DatasetPlan(name=d.entry.id, bucket_names=d.placements.names, bucket=d.placements.bucket,
                              repeats=d.entry.repeats, probability=d.entry.probability) for d in scanned],
        batch_size=batch_size, world_size=world_size, seed=seed, oversubscribe=oversubscribe,
        accumulation=accumulation,
    )
    return TrainingData(list(scanned), caches, empty, planner)
