"""The run's data: scanned datasets, their cache keys and stores, and the epoch planner."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.config.datasets import DatasetEntry, default_text_embeds
from simpletuner.core.datasets.cache_store import CacheStore
from simpletuner.core.datasets.scan import ScannedDataset
from simpletuner.core.datasets.storage import DatasetStorage
from simpletuner.core.training.caching import LatentJob, TextJob, latent_keys, text_keys
from simpletuner.core.training.sampler import DatasetPlan, EpochPlanner


@attrs.define
class TrainingData:
    """Scanned datasets with the cache key of every sample's latents and caption."""

    datasets: list[ScannedDataset]
    latent_jobs: list[list[LatentJob]]
    text_jobs: list[list[TextJob]]
    empty_text: TextJob
    planner: EpochPlanner

    def all_latent_jobs(self) -> list[LatentJob]:
        """Every sample's latent job."""
        return [job for jobs in self.latent_jobs for job in jobs]

    def all_text_jobs(self) -> list[TextJob]:
        """Every caption's text job, plus the empty caption used by caption dropout."""
        return [job for jobs in self.text_jobs for job in jobs] + [self.empty_text]


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
) -> TrainingData:
    """Attach cache stores and keys to the scanned datasets and plan their batches.

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

    latent_key = latent_keys(vae_source)
    text_key = text_keys(text_source, family.spec.name, family.text_cache_settings())
    latent_jobs, text_jobs = [], []
    for dataset in scanned:
        entry = dataset.entry
        store = CacheStore(storage.latents(entry, cache_root))
        latent_jobs.append([LatentJob(s, dataset, store, latent_key(s)) for s in dataset.samples])
        tstore = text_store(entry)
        # keyed by the captions' digests from the index: no caption file is read unless its embedding is missing
        text_jobs.append([TextJob(partial(dataset.caption, i), tstore, text_key(dataset.caption_digest(i)))
                          for i in range(len(dataset.rows))])
    first_store = text_store(scanned[0].entry)
    empty = TextJob(_empty_caption, first_store, text_key(hashlib.sha256(b"").hexdigest()))
    planner = EpochPlanner(
        datasets=[DatasetPlan(name=d.entry.id, buckets=d.placements.bucket_names(),
                              repeats=d.entry.repeats, probability=d.entry.probability) for d in scanned],
        batch_size=batch_size, world_size=world_size, seed=seed, oversubscribe=oversubscribe,
        accumulation=accumulation,
    )
    return TrainingData(list(scanned), latent_jobs, text_jobs, empty, planner)
