"""The memory a run holds per image for its bookkeeping (index table, placements, cache keys, epoch plan) stays
under 300 bytes, measured by the allocator, and the run's own account of it (``bookkeeping_bytes``) is honest."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.datasets.buckets import ResolutionSettings
from simpletuner.core.datasets.cache_store import CacheStore
from simpletuner.core.datasets.index import NO_CAPTION_FILE, ImageTable, PathColumn
from simpletuner.core.datasets.scan import build_scanned
from simpletuner.core.training.caching import TextJob, latent_key_column, text_key_column, text_keys
from simpletuner.core.training.data import DatasetCaches, TrainingData
from simpletuner.core.training.sampler import DatasetPlan, EpochPlanner
from simpletuner.plugins.data_backends.local import LocalDataBackend

pytestmark = pytest.mark.timeout(120)

IMAGES = 20_000
LIMIT = 300


def build(count: int, store: CacheStore) -> TrainingData:
    """A run's data for ``count`` synthetic images in shard folders, as a restart builds it from an index."""
    rng = np.random.default_rng(0)
    table = ImageTable.empty(count)
    table.paths = PathColumn.from_list([f"shard-{i // 1000:04d}/image-{i:07d}.jpg" for i in range(count)])
    table.size[:] = rng.integers(10_000, 900_000, count)
    table.stamp[:] = rng.integers(1, 2**62, count)
    table.caption_size[:] = 40
    table.caption_size[::1000] = NO_CAPTION_FILE
    table.width[:] = rng.choice([512, 768, 1024, 1536], count)
    table.height[:] = rng.choice([512, 768, 1024, 1536], count)
    table.readable[:] = True
    table.digest[:] = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    table.caption_digest[:] = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    settings = ResolutionSettings(resolution=512, resolution_type="pixel", minimum_image_size=256, alignment=64)
    scanned = build_scanned(DatasetEntry(id="big", instance_data_dir="x"), LocalDataBackend("."), settings, table, 0)
    key = text_keys("text-model", "flux", {})
    caches = DatasetCaches(scanned, store, latent_key_column(scanned, "vae"), store,
                           text_key_column(table.caption_digest[scanned.rows], key))
    planner = EpochPlanner([DatasetPlan("big", scanned.placements.names, scanned.placements.bucket)], batch_size=4)
    planner.epoch(0)
    return TrainingData([scanned], [caches], TextJob(str, store, key(hashlib.sha256(b"").hexdigest())), planner)


def test_a_run_holds_under_300_bytes_per_image(tmp_path: Path) -> None:
    store = CacheStore(LocalDataBackend(tmp_path))
    build(100, store)  # first use of every code path: whatever it caches for good is not per image
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        data = build(IMAGES, store)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(data.datasets[0].rows) == IMAGES - IMAGES // 1000
    per_image = held / IMAGES
    assert per_image <= LIMIT, f"{per_image:.0f} bytes per image"
    # the run's own account covers what it holds, give or take the objects of a few datasets and buckets
    assert data.nbytes <= held <= data.nbytes + 64 * 1024, (data.nbytes, held)


def test_the_data_stage_leaves_imported_objects_out_of_collections_and_still_collects_its_own() -> None:
    import weakref

    from simpletuner.core.training.prepare import imports_frozen

    class Node:
        pass

    assert gc.get_freeze_count() == 0
    with imports_frozen():
        frozen = gc.get_freeze_count()
        cycle = Node()
        cycle.self = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert gone() is None  # made inside: still collected
    assert frozen > 1000 and gc.get_freeze_count() == 0
