"""Building the run's data from the datasets file: backends, scans, cache keys and the batch planner."""

from __future__ import annotations

import logging
from typing import Any

from simpletuner.core.config.loading import LoadedEnvironment
from simpletuner.core.datasets.scan import bucket_counts, scan_datasets
from simpletuner.core.datasets.storage import DatasetStorage, check_storage
from simpletuner.core.events import EventWriter
from simpletuner.core.plugins import Registry
from simpletuner.core.training.data import TrainingData, build_training_data
from simpletuner.core.training.resolve import ResolvedRun
from simpletuner.core.workspace import Workspace

logger = logging.getLogger(__name__)


def prepare_data(loaded: LoadedEnvironment, workspace: Workspace, registry: Registry, resolved: ResolvedRun,
                 world_size: int, seed: int, events: EventWriter) -> TrainingData:
    """Scan every enabled image dataset, key its caches and plan its batches; reports skips as an event.

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
    scanned = scan_datasets(loaded.datasets, storage.images, core, alignment=core.aspect_bucket_alignment, seed=seed)
    data = build_training_data(
        scanned, loaded.datasets, storage, cache_root=resolved.output_dir / "cache",
        vae_source=resolved.vae_source, text_source=resolved.pretrained, family=resolved.family,
        batch_size=core.train_batch_size, world_size=world_size, seed=seed,
        oversubscribe=core.allow_dataset_oversubscription, accumulation=core.gradient_accumulation_steps,
    )
    for warning in data.planner.check_sizes():
        logger.warning(warning)
        events.emit("warning", message=warning)
    data.planner.epoch(0)  # fills planner.dropped for the report
    events.emit(
        "datasets_scanned",
        datasets=[{"id": d.entry.id, "images": len(d.samples),
                   "skipped": {r: sum(1 for s in d.skipped if s.reason == r) for r in {s.reason for s in d.skipped}},
                   "skipped_examples": [s.path for s in d.skipped[:20]]} for d in scanned],
        buckets=bucket_counts(scanned), dropped=dict(data.planner.dropped),
    )
    return data
