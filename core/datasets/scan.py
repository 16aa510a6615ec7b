"""Scanning image datasets: which images train, at which size, with which caption — and which are skipped, and why.

Unreadable, corrupt or too-small images and images without a caption are reported by count and name and left out;
they never stop a run and are never upscaled. A scan goes through the dataset's index
(:mod:`simpletuner.core.datasets.index`): only files it does not know yet are read, and only their headers.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from simpletuner.core.config.caption_shuffle import CaptionShuffle
from simpletuner.core.config.datasets import DatasetEntry
from simpletuner.core.datasets.buckets import Placement, Placements, ResolutionSettings, place_many, too_small
from simpletuner.core.datasets.index import (
    ImageTable,
    Refresh,
    ScanContext,
    derived_caption,
    load_index,
    read_caption,
    refresh,
    save_index,
    split_caption,
)
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.interfaces import DataBackend

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp"})

#: Called as ``progress(dataset_id, done, total)`` while a scan reads files.
Progress = Callable[[str, int, int], None]


class DatasetError(SimpleTunerError):
    """A dataset that cannot train: missing, empty, or with nothing usable in it."""


@attrs.frozen
class Sample:
    """One training image: where it is, its size and its placement in a bucket; its caption is read when asked."""

    dataset_id: str
    path: str
    width: int
    height: int
    content_hash: str
    placement: Placement
    dataset: ScannedDataset = attrs.field(eq=False, repr=False)
    index: int = attrs.field(eq=False, repr=False)

    @property
    def caption(self) -> str:
        """The caption, by the dataset's caption strategy."""
        return self.dataset.caption(self.index)


@attrs.frozen
class Skipped:
    """An image left out of training, with the reason (``too small``, ``unreadable``, ``no caption``)."""

    dataset_id: str
    path: str
    reason: str


@attrs.frozen
class IndexFile:
    """Where a dataset's index is kept, and whether this process writes it (one process of a run does)."""

    backend: DataBackend
    path: str
    writable: bool = True


class Samples(Sequence[Sample]):
    """The samples of a scanned dataset, made when asked for (a dataset keeps arrays, not objects)."""

    def __init__(self, dataset: ScannedDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.dataset.sample(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.dataset.sample(index)

    def __iter__(self) -> Iterator[Sample]:
        return (self.dataset.sample(i) for i in range(len(self)))


@attrs.frozen(eq=False)
class ScannedDataset:
    """The usable samples of one dataset (sample ``i`` is row ``rows[i]`` of the index table) and the images it
    skipped. Everything is held in arrays (:attr:`nbytes` per image stays around 200 bytes)."""

    entry: DatasetEntry
    backend: DataBackend
    settings: ResolutionSettings
    table: ImageTable
    rows: Any  # int64 (n,): table row of each sample
    placements: Placements  # one row per sample
    reasons: Any  # uint8 (len(table),): 0 trains, else an index into SKIP_REASONS
    refreshed: Refresh | None = None
    seed: int = 0  # the run's seed (of random crops, and of caption_shuffle without a seed of its own)

    @property
    def samples(self) -> Samples:
        """Every sample, in path order."""
        return Samples(self)

    def sample(self, index: int) -> Sample:
        """Sample ``index``."""
        row = int(self.rows[index])
        return Sample(self.entry.id, self.table.paths[row], int(self.table.width[row]), int(self.table.height[row]),
                      self.content_hash(index), self.placements.placement(index), self, index)

    def path(self, index: int) -> str:
        """The image path of sample ``index``."""
        return self.table.paths[int(self.rows[index])]

    def content_hash(self, index: int) -> str:
        """The SHA-256 (hex) of sample ``index``'s image bytes."""
        return self.table.digest[int(self.rows[index])].tobytes().hex()

    @property
    def caption_prefix(self) -> str | None:
        """The text put before every caption (``prepend_instance_prompt``); None for none."""
        entry = self.entry
        if entry.prepend_instance_prompt and entry.caption_strategy != "instanceprompt":
            return entry.instance_prompt or ""
        return None

    def caption_digests(self) -> np.ndarray:
        """Each sample's caption digest (``n × 32`` bytes) as training keys it, from the index (nothing is read):
        the caption text's SHA-256, combined with the prefix's when :attr:`caption_prefix` is set (a one-to-one
        change, so prefixed captions are keyed apart from the same captions without it)."""
        return self._keyed(self.table.caption_digest[self.rows])

    def caption_digest(self, index: int) -> str:
        """Sample ``index``'s caption digest (hex) as training keys it (:meth:`caption_digests`)."""
        return self._keyed(self.table.caption_digest[int(self.rows[index])]).tobytes().hex()

    def _keyed(self, digests: np.ndarray) -> np.ndarray:
        prefix = self.caption_prefix
        if prefix is None:
            return digests
        salt = hashlib.sha256(b"prepended\0" + prefix.encode("utf-8")).digest()
        return digests ^ np.frombuffer(salt, dtype=np.uint8)

    @property
    def shuffle(self) -> CaptionShuffle | None:
        """The dataset's ``caption_shuffle``, when enabled."""
        shuffle = self.entry.caption_shuffle
        return shuffle if shuffle is not None and shuffle.enable else None

    def caption_lines(self, index: int) -> int:
        """How many captions the caption text of sample ``index`` holds: one per non-empty line (from the index;
        nothing is read), or one with the dataset's ``disable_multiline_split``."""
        if self.entry.disable_multiline_split:
            return 1
        return max(1, int(self.table.caption_lines[int(self.rows[index])]))

    @property
    def caption_copies(self) -> int:
        """How many captions ``caption_shuffle`` makes of each caption (1 without it)."""
        shuffle = self.shuffle
        return shuffle.captions_per_caption if shuffle is not None else 1

    def caption_count(self, index: int) -> int:
        """How many captions sample ``index`` trains with, one picked per visit: each of its caption lines
        (:meth:`caption_lines`), times :attr:`caption_copies`."""
        return self.caption_lines(index) * self.caption_copies

    def caption_counts(self) -> np.ndarray:
        """:meth:`caption_count` of every sample (int64), from the index's arrays."""
        if self.entry.disable_multiline_split:
            lines = np.ones(len(self.rows), dtype=np.int64)
        else:
            lines = np.maximum(self.table.caption_lines[self.rows], 1).astype(np.int64)
        return lines * self.caption_copies

    def caption(self, index: int, choice: int | None = None) -> str:
        """The caption text of sample ``index`` (read from its caption file, for file captions), after
        :attr:`caption_prefix`; with ``choice``, that one of its :meth:`caption_count` captions: line
        ``choice // copies``, copy ``choice % copies`` of it (``copies`` from ``caption_shuffle``; 1 without)."""
        path = self.path(index)
        caption = caption_for(self.entry, self.backend, path)
        if caption is None:
            raise DatasetError(f"dataset {self.entry.id!r}: the caption file of {path} disappeared during the run; "
                               "restore it or restart the run")
        shuffle = self.shuffle
        line, copy = divmod(choice or 0, self.caption_copies)
        if choice is not None and self.caption_lines(index) > 1:
            captions = split_caption(caption)
            if len(captions) != self.caption_lines(index):
                raise DatasetError(f"dataset {self.entry.id!r}: the caption file of {path} changed during the run; "
                                   "restart the run to read it again")
            caption = captions[line]
        prefix = self.caption_prefix
        if prefix is not None:
            caption = f"{prefix} {caption}"
        return shuffle.caption(caption, copy, self.seed) if shuffle is not None and choice is not None else caption

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        """The images left out, with the reason."""
        return tuple(Skipped(self.entry.id, self.table.paths[int(r)], SKIP_REASONS[self.reasons[r]])
                     for r in np.flatnonzero(self.reasons))

    def skipped_paths(self, limit: int) -> list[str]:
        """The paths of the first ``limit`` images left out."""
        return [self.table.paths[int(r)] for r in np.flatnonzero(self.reasons)[:limit]]

    def skip_counts(self) -> dict[str, int]:
        """Images left out, by reason."""
        counts = np.bincount(self.reasons, minlength=len(SKIP_REASONS))
        return {SKIP_REASONS[k]: int(counts[k]) for k in range(1, len(SKIP_REASONS)) if counts[k]}

    def skip_summary(self, limit: int = 5) -> list[str]:
        """One line per skip reason: ``3 too small (a.png, b.png, c.png)``."""
        lines = []
        for code in range(1, len(SKIP_REASONS)):
            rows = np.flatnonzero(self.reasons == code)
            if not len(rows):
                continue
            shown = ", ".join(self.table.paths[int(r)] for r in rows[:limit]) + (", ..." if len(rows) > limit else "")
            lines.append(f"{len(rows)} {SKIP_REASONS[code]} ({shown})")
        return lines

    @property
    def nbytes(self) -> int:
        """Bytes of per-image bookkeeping held (index table, sample rows, placements, reasons)."""
        return int(self.table.nbytes + self.rows.nbytes + self.placements.nbytes + self.reasons.nbytes)


#: Why an image is left out, by code (0: it trains).
SKIP_REASONS = ("", "unreadable", "too small", "no caption", "outside the aspect ratio range", "over max_num_samples")


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
    caption = derived_caption(entry.caption_strategy, entry.instance_prompt or "", path)
    return caption if caption is not None else read_caption(backend, path)


def scan_context(entry: DatasetEntry, backend: DataBackend, sizes_from_backend: bool = False) -> ScanContext:
    """What a dataset's index depends on besides its files (``sizes_from_backend``: see :class:`ScanContext`)."""
    location = getattr(backend, "location", None) or str(getattr(backend, "root", entry.instance_data_dir or ""))
    return ScanContext(location=location, caption_strategy=entry.caption_strategy,
                       instance_prompt=entry.instance_prompt or "", sizes_from_backend=sizes_from_backend)


def index_path(entry: DatasetEntry) -> str:
    """The index file of a dataset in its latent cache's storage (named by a digest of the id, which is free text)."""
    return f"dataset-index/{hashlib.sha256(entry.id.encode('utf-8')).hexdigest()[:24]}.npz"


def scan_dataset(entry: DatasetEntry, backend: DataBackend, settings: ResolutionSettings, *, seed: int = 0,
                 threads: int = 4, index: IndexFile | None = None, progress: Progress | None = None,
                 sizes_from_backend: bool = False) -> ScannedDataset:
    """Place every image of a dataset in a bucket, reading only the files its ``index`` does not know (all of them
    without one) in ``threads`` parallel threads, and store the updated index. With ``sizes_from_backend`` (latents
    encoded while training), images whose size the backend knows are not read at all.

    Raises :class:`DatasetError` when the dataset holds no image at all or none that can train.
    """
    context = scan_context(entry, backend, sizes_from_backend)
    old = load_index(index.backend, index.path, context) if index is not None else None
    report = (lambda done, total: progress(entry.id, done, total)) if progress else None
    result = refresh(backend, context, old, IMAGE_EXTENSIONS, threads=threads, progress=report)
    table = result.table
    if not len(table):
        where = getattr(backend, "location", entry.instance_data_dir)  # remote backends name their location
        raise DatasetError(f"dataset {entry.id!r} has no images (jpg, jpeg, png, webp) in {where}; "
                           f"add images or disable the dataset")
    if index is not None and index.writable and (result.changed or old is None):
        try:
            save_index(index.backend, index.path, context, table)
        except OSError as exc:  # a read-only cache folder costs the next start a full scan, not this run
            logger.warning("dataset %s: could not store its index (%s); the next start scans it again", entry.id, exc)
    scanned = build_scanned(entry, backend, settings, table, seed, result)
    if not len(scanned.rows):
        raise DatasetError(f"dataset {entry.id!r}: none of its {len(table)} images can train: "
                           + "; ".join(scanned.skip_summary()))
    return scanned


def build_scanned(entry: DatasetEntry, backend: DataBackend, settings: ResolutionSettings, table: ImageTable,
                  seed: int, refreshed: Refresh | None = None) -> ScannedDataset:
    """Which rows of an index table train and where each goes, under ``settings``."""
    reasons = np.zeros(len(table), dtype=np.uint8)
    small = too_small(table.width, table.height, settings)
    reasons[~table.has_caption()] = SKIP_REASONS.index("no caption")
    reasons[_outside_aspect_range(table, entry)] = SKIP_REASONS.index("outside the aspect ratio range")
    reasons[small] = SKIP_REASONS.index("too small")
    reasons[~table.readable] = SKIP_REASONS.index("unreadable")
    if entry.max_num_samples is not None:
        reasons[_beyond_max_samples(table, np.flatnonzero(reasons == 0), entry)] = SKIP_REASONS.index(
            "over max_num_samples")
    rows = np.flatnonzero(reasons == 0)
    # the crop seed of an image comes from its content, so its random crop (and cache key) stays put
    digest_seed = table.digest[rows, :4].astype(np.uint32)
    crop_seeds = (digest_seed[:, 0] << 24 | digest_seed[:, 1] << 16 | digest_seed[:, 2] << 8 | digest_seed[:, 3])
    crop_seeds = crop_seeds.astype(np.int64) ^ seed
    placements = place_many(table.width[rows], table.height[rows], crop_seeds, settings)
    return ScannedDataset(entry, backend, settings, table, rows, placements, reasons, refreshed, seed)


def _outside_aspect_range(table: ImageTable, entry: DatasetEntry) -> np.ndarray:
    """Which images' aspect ratio (width / height) is below the entry's ``minimum_aspect_ratio`` or above its
    ``maximum_aspect_ratio``."""
    ratio = table.width / np.maximum(table.height, 1)
    outside = np.zeros(len(table), dtype=bool)
    if entry.minimum_aspect_ratio is not None:
        outside |= ratio < entry.minimum_aspect_ratio
    if entry.maximum_aspect_ratio is not None:
        outside |= ratio > entry.maximum_aspect_ratio
    return outside


def _beyond_max_samples(table: ImageTable, rows: np.ndarray, entry: DatasetEntry) -> np.ndarray:
    """The ``rows`` left out to keep ``max_num_samples`` of them: those whose path ranks after the first
    ``max_num_samples`` by a digest of the dataset id and the path, so every run keeps the same images, and adding
    or removing images changes the pick by about as many."""
    limit = entry.max_num_samples or 0
    if len(rows) <= limit:
        return np.zeros(0, dtype=np.int64)
    salt = entry.id.encode("utf-8") + b"\0"
    ranks = np.fromiter((int.from_bytes(hashlib.blake2b(salt + table.paths[int(r)].encode("utf-8", "surrogateescape"),
                                                        digest_size=8).digest(), "little") for r in rows),
                        dtype=np.uint64, count=len(rows))
    return rows[np.argsort(ranks, kind="stable")[limit:]]


def scan_datasets(entries: Sequence[DatasetEntry], make_backend: Callable[[DatasetEntry], DataBackend], core: Any,
                  alignment: int, seed: int = 0, *, index_for: Callable[[DatasetEntry], IndexFile | None] | None = None,
                  progress: Progress | None = None, threads: int = 4) -> list[ScannedDataset]:
    """Scan every enabled image dataset (through its index, where ``index_for`` names one)."""
    scanned = []
    for entry in entries:
        if entry.disabled or entry.dataset_type != "image":
            continue
        settings = resolution_settings(entry, core, alignment)
        index = index_for(entry) if index_for is not None else None
        scanned.append(scan_dataset(entry, make_backend(entry), settings, seed=seed, index=index, progress=progress,
                                    threads=threads, sizes_from_backend=bool(core.vae_cache_ondemand)))
    return scanned


def bucket_counts(datasets: Sequence[ScannedDataset]) -> dict[str, int]:
    """Images per bucket across datasets, for the run's report."""
    counts: Counter[str] = Counter()
    for dataset in datasets:
        per_bucket = np.bincount(dataset.placements.bucket, minlength=len(dataset.placements.names))
        for name, count in zip(dataset.placements.names, per_bucket.tolist(), strict=True):
            counts[name] += count
    return dict(counts)
