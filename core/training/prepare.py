"""Building the run's data from the datasets file: backends, scans, cache keys and the batch planner."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from typing import Any

from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.config.loading import LoadedEnvironment
from simpletuner.core.datasets.scan import IndexFile, bucket_counts, index_path, scan_datasets
from simpletuner.core.datasets.storage import DatasetStorage, check_storage
from simpletuner.core.events import EventWriter
from simpletuner.core.plugins import Registry
from simpletuner.core.training.data import TrainingData, build_training_data
from simpletuner.core.training.resolve import ResolvedRun
from simpletuner.core.workspace import Workspace

logger = logging.getLogger(__name__)

#: Seconds between two ``scan_progress`` events of one dataset.
PROGRESS_EVERY_S = 1.0


class ScanReporter:
    """Reports a scan's progress as ``scan_progress`` events (dataset, files read, files to read, ETA), at most one
    per :data:`PROGRESS_EVERY_S` per dataset, and always the first and the last."""

    def __init__(self, events: EventWriter) -> None:
        self.events = events
        self.started: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def __call__(self, dataset: str, done: int, total: int) -> None:
        now = time.monotonic()
        started = self.started.setdefault(dataset, now)
        if done and done < total and now - self.last.get(dataset, 0.0) < PROGRESS_EVERY_S:
            return
        self.last[dataset] = now
        rate = done / (now - started) if done and now > started else None
        self.events.emit("scan_progress", dataset=dataset, done=done, total=total,
                         eta_s=round((total - done) / rate, 1) if rate else None)


@contextlib.contextmanager
def imports_frozen() -> Iterator[None]:
    """The objects that exist on entry (mostly those of the libraries already imported, hundreds of thousands) are
    left out of cyclic garbage collection inside. A scan allocates a few objects per image, which triggers a
    collection every few hundred thousand allocations; each full one would walk every imported object again and
    cost more than the scan itself. Collections still run, over the objects made inside."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def prepare_data(loaded: LoadedEnvironment, workspace: Workspace, registry: Registry, resolved: ResolvedRun,
                 world_size: int, seed: int, events: EventWriter, is_main: bool = True) -> TrainingData:
    """Scan every enabled image dataset through its index (kept beside its latent cache, written by the main
    process only), key its caches and plan its batches; reports the scan's progress and the skips as events.

    Raises :class:`~simpletuner.core.errors.DataBackendError` when a dataset's remote storage is unusable, and
    :class:`~simpletuner.core.errors.SimpleTunerError` (before any encoder is loaded) when a bucket is
    smaller than the effective batch and oversubscription does not cover it; each bucket oversubscription repeats
    is a ``warning`` event."""
    core = loaded.config.core
    env_dir = loaded.environment.path

    def resolve(path: str) -> Any:
        return workspace.resolve_config_path(path, env_dir)

    storage = DatasetStorage(registry, resolve, loaded.config)
    check_storage(storage, loaded.datasets)  # an unreachable bucket fails here, not halfway through the scan
    cache_root = resolved.output_dir / "cache"

    def index_for(entry: DatasetEntry) -> IndexFile:
        return IndexFile(storage.latents(entry, cache_root), index_path(entry), writable=is_main)

    with imports_frozen():
        scanned = scan_datasets(loaded.datasets, storage.images, core, alignment=core.aspect_bucket_alignment,
                                seed=seed, index_for=index_for, progress=ScanReporter(events))
        data = build_training_data(
            scanned, loaded.datasets, storage, cache_root=cache_root,
            vae_source=resolved.vae_source, text_source=resolved.pretrained, family=resolved.family,
            batch_size=core.train_batch_size, world_size=world_size, seed=seed,
            oversubscribe=core.allow_dataset_oversubscription, accumulation=core.gradient_accumulation_steps,
            index_for=index_for,
        )
    for warning in data.planner.check_sizes():
        logger.warning(warning)
        events.emit("warning", message=warning)
    data.planner.epoch(0)  # fills planner.dropped for the report
    events.emit(
        "datasets_scanned",
        datasets=[{"id": d.entry.id, "images": len(d.samples), "skipped": d.skip_counts(),
                   "skipped_examples": d.skipped_paths(20),
                   "read": d.refreshed.read_images if d.refreshed else None,
                   "scan_s": round(d.refreshed.seconds, 3) if d.refreshed else None} for d in scanned],
        buckets=bucket_counts(scanned), dropped=dict(data.planner.dropped), bookkeeping_bytes=data.nbytes,
    )
    return data
