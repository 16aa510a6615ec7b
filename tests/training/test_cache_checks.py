"""Checking a run's caches from its key columns: one job per missing key (shared images and captions encoded once,
across the datasets sharing a store), none for what is complete."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.datasets.buckets import ResolutionSettings
from simpletuner.core.datasets.cache_store import CacheStore
from simpletuner.core.datasets.index import ImageTable, PathColumn
from simpletuner.core.datasets.scan import ScannedDataset, build_scanned
from simpletuner.core.training.caching import (
    LazyJobs,
    TextJob,
    latent_key_column,
    missing_latents,
    missing_texts,
    text_key_column,
    text_keys,
)
from simpletuner.core.training.data import DatasetCaches
from simpletuner.plugins.data_backends.local import LocalDataBackend

pytestmark = pytest.mark.timeout(60)

SETTINGS = ResolutionSettings(resolution=64, resolution_type="pixel", minimum_image_size=32, alignment=16)
TEXT_KEY = text_keys("text-model", "flux", {})


def scanned(name: str, image_digests: list[int], caption_digests: list[int]) -> ScannedDataset:
    count = len(image_digests)
    table = ImageTable.empty(count)
    table.paths = PathColumn.from_list([f"{i:03d}.png" for i in range(count)])
    table.width[:] = 64
    table.height[:] = 64
    table.readable[:] = True
    table.digest[:] = np.array(image_digests, dtype=np.uint8)[:, None]
    table.caption_digest[:] = np.array(caption_digests, dtype=np.uint8)[:, None]
    return build_scanned(DatasetEntry(id=name, instance_data_dir="x"), LocalDataBackend("."), SETTINGS, table, 0)


def caches(dataset: ScannedDataset, latents: CacheStore, texts: CacheStore) -> DatasetCaches:
    return DatasetCaches(dataset, latents, latent_key_column(dataset, "vae"), texts,
                         text_key_column(dataset.table.caption_digest[dataset.rows], TEXT_KEY))


def test_each_missing_key_is_one_job(tmp_path: Path) -> None:
    texts = CacheStore(LocalDataBackend(tmp_path / "text"))
    first = caches(scanned("a", [1, 2, 1, 3], [7, 8, 7, 9]), CacheStore(LocalDataBackend(tmp_path / "a")), texts)
    second = caches(scanned("b", [1, 4], [9, 10]), CacheStore(LocalDataBackend(tmp_path / "b")), texts)
    empty = TextJob(lambda: "", texts, TEXT_KEY(hashlib.sha256(b"").hexdigest()))

    latents = missing_latents([first, second])
    assert latents.checked == 6
    assert [(job.dataset.entry.id, job.sample.path) for job in latents.jobs] == [
        ("a", "000.png"), ("a", "001.png"), ("a", "003.png"), ("b", "000.png"), ("b", "001.png")]
    # held as two small arrays, made when asked for; a process's share (a slice) too
    share = latents.jobs[1::2]
    assert isinstance(share, LazyJobs) and [job.sample.path for job in share] == ["001.png", "000.png"]
    assert latents.jobs.made_from.nbytes + latents.jobs.made_by.nbytes == 8 * 5
    text = missing_texts([first, second], [empty])
    assert text.checked == 5  # captions 7, 8, 9, 10 and the empty one, each once across the shared store
    assert sorted(job.key for job in text.jobs) == sorted({TEXT_KEY(bytes([d] * 32).hex()) for d in (7, 8, 9, 10)}
                                                           | {empty.key})

    for job in latents.jobs:
        job.store.write(job.key, {"latents": torch.zeros(2)})
    texts.write(TEXT_KEY(bytes([9] * 32).hex()), {"prompt_embeds": torch.zeros(2)})
    assert len(missing_latents([first, second]).jobs) == 0
    left = missing_texts([first, second], [empty])
    assert left.checked == 5 and len(left.jobs) == 4
    assert {job.caption for job in left.jobs if job.store is texts and job.key == empty.key} == {""}
