"""Scanning image datasets: which images train, at which size, with which caption — and which are skipped, and why.

Unreadable, corrupt or too-small images and images without a caption are reported by count and name and left out;
they never stop a run and are never upscaled.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

import attrs

from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.datasets.buckets import Placement, ResolutionSettings, place, too_small
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.interfaces import DataBackend

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp"})


class DatasetError(SimpleTunerError):
    """A dataset that cannot train: missing, empty, or with nothing usable in it."""


@attrs.frozen
class Sample:
    """One training image: where it is, its caption, its size and its placement in a bucket."""

    dataset_id: str
    path: str
    caption: str
    width: int
    height: int
    content_hash: str
    placement: Placement


@attrs.frozen
class Skipped:
    """An image left out of training, with the reason (``too small``, ``unreadable``, ``no caption``)."""

    dataset_id: str
    path: str
    reason: str


@attrs.frozen
class ScannedDataset:
    """The usable samples of one dataset and the images it skipped."""

    entry: DatasetEntry
    backend: DataBackend
    settings: ResolutionSettings
    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...]

    def skip_summary(self, limit: int = 5) -> list[str]:
        """One line per skip reason: ``3 too small (a.png, b.png, c.png)``."""
        by_reason: dict[str, list[str]] = {}
        for item in self.skipped:
            by_reason.setdefault(item.reason, []).append(item.path)
        lines = []
        for reason, paths in by_reason.items():
            shown = ", ".join(paths[:limit]) + (", ..." if len(paths) > limit else "")
            lines.append(f"{len(paths)} {reason} ({shown})")
        return lines


def resolution_settings(entry: DatasetEntry, core: Any, alignment: int) -> ResolutionSettings:
    """The dataset's own resolution settings, falling back to the config's."""
    resolution = entry.resolution if entry.resolution is not None else core.resolution
    minimum = entry.minimum_image_size if entry.minimum_image_size is not None else core.minimum_image_size
    return ResolutionSettings(
        resolution=resolution,
        resolution_type=entry.resolution_type or core.resolution_type,
        minimum_image_size=resolution if minimum is None else minimum,
        alignment=alignment,
        crop=entry.crop,
        crop_style=entry.crop_style,
        crop_aspect=entry.crop_aspect,
    )


def caption_for(entry: DatasetEntry, backend: DataBackend, path: str) -> str | None:
    """The caption of an image by the dataset's caption strategy; None when its caption file is missing."""
    if entry.caption_strategy == "instanceprompt":
        return entry.instance_prompt or ""
    stem = PurePosixPath(path).with_suffix("")
    if entry.caption_strategy == "filename":
        return stem.name.replace("_", " ").replace("-", " ").strip()
    # textfile, and huggingface: its backend serves each row's caption column as the row's .txt
    caption_path = str(stem) + ".txt"
    if not backend.exists(caption_path):
        return None
    return backend.read(caption_path).decode("utf-8", errors="replace").strip()


def _examine(entry: DatasetEntry, backend: DataBackend, settings: ResolutionSettings, seed: int,
             path: str) -> Sample | Skipped:
    from PIL import Image, UnidentifiedImageError

    try:
        data = backend.read(path)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()  # catches truncated and corrupt files without decoding every pixel twice
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return Skipped(entry.id, path, "unreadable")
    if too_small(width, height, settings):
        return Skipped(entry.id, path, "too small")
    caption = caption_for(entry, backend, path)
    if caption is None:
        return Skipped(entry.id, path, "no caption")
    digest = hashlib.sha256(data).hexdigest()
    crop_seed = int(digest[:8], 16) ^ seed
    return Sample(entry.id, path, caption, width, height, digest, place(width, height, settings, crop_seed))


def scan_dataset(entry: DatasetEntry, backend: DataBackend, settings: ResolutionSettings, *, seed: int = 0,
                 threads: int = 4) -> ScannedDataset:
    """Read every image of a dataset (in parallel threads) and place it in a bucket.

    Raises :class:`DatasetError` when the dataset holds no image at all or none that can train.
    """
    paths = backend.list(extensions=IMAGE_EXTENSIONS)
    if not paths:
        where = getattr(backend, "location", entry.instance_data_dir)  # remote backends name their location
        raise DatasetError(f"dataset {entry.id!r} has no images (jpg, jpeg, png, webp) in {where}; "
                           f"add images or disable the dataset")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda p: _examine(entry, backend, settings, seed, p), paths))
    samples = tuple(r for r in results if isinstance(r, Sample))
    skipped = tuple(r for r in results if isinstance(r, Skipped))
    scanned = ScannedDataset(entry, backend, settings, samples, skipped)
    if not samples:
        raise DatasetError(f"dataset {entry.id!r}: none of its {len(paths)} images can train: "
                           + "; ".join(scanned.skip_summary()))
    return scanned


def scan_datasets(entries: Sequence[DatasetEntry], make_backend: Callable[[DatasetEntry], DataBackend], core: Any,
                  alignment: int, seed: int = 0) -> list[ScannedDataset]:
    """Scan every enabled image dataset."""
    scanned = []
    for entry in entries:
        if entry.disabled or entry.dataset_type != "image":
            continue
        settings = resolution_settings(entry, core, alignment)
        scanned.append(scan_dataset(entry, make_backend(entry), settings, seed=seed))
    return scanned


def bucket_counts(datasets: Sequence[ScannedDataset]) -> dict[str, int]:
    """Images per bucket across datasets, for the run's report."""
    return dict(Counter(s.placement.bucket for d in datasets for s in d.samples))
