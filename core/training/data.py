"""The run's data: scanned datasets, their cache keys and stores, and the epoch planner.

Every per-sample fact is held in arrays: a dataset's cache keys are two columns of 32-byte digests (its latents'
and its caption's, plus the keys of the further captions of images with several: lines of a caption text, shuffled
copies), and the jobs of caching are made only for the entries found missing.
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
from simpletuner.core.datasets.index import caption_line_digest
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
class CaptionVariants:
    """The samples with several captions (:meth:`~simpletuner.core.datasets.scan.ScannedDataset.caption_count`)
    and the text keys of their captions after the first, whose key is the sample's own in
    :attr:`DatasetCaches.text_keys`.

    Sample ``samples[i]`` has ``1 + offsets[i + 1] - offsets[i]`` captions; its caption ``choice`` ≥ 1 is keyed by
    ``keys[offsets[i] + choice - 1]``. Only these samples are held, so a dataset of single captions holds nothing.
    """

    samples: np.ndarray  # int64, ascending sample indices
    offsets: np.ndarray  # int64 (len(samples) + 1,)
    keys: np.ndarray  # "S32"

    @classmethod
    def empty(cls) -> CaptionVariants:
        """No sample with several captions."""
        return cls(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(0, dtype="S32"))

    def _position(self, index: int) -> int:
        """Where sample ``index`` is in :attr:`samples`; -1 when it has one caption."""
        at = int(np.searchsorted(self.samples, index))
        return at if at < len(self.samples) and self.samples[at] == index else -1

    def count(self, index: int) -> int:
        """How many captions sample ``index`` has."""
        at = self._position(index)
        return 1 if at < 0 else 1 + int(self.offsets[at + 1] - self.offsets[at])

    def key_row(self, index: int, choice: int) -> int:
        """The row of :attr:`keys` of caption ``choice`` (≥ 1) of sample ``index``."""
        return int(self.offsets[self._position(index)]) + choice - 1

    def owner(self, row: int) -> tuple[int, int]:
        """(sample index, caption choice) of row ``row`` of :attr:`keys`."""
        at = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return int(self.samples[at]), row - int(self.offsets[at]) + 1

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return int(self.samples.nbytes + self.offsets.nbytes + self.keys.nbytes)


@attrs.frozen(eq=False)
class DatasetCaches:
    """One dataset's caches: where its latents and caption embeddings are kept and each sample's two keys (and
    the keys of the further captions of samples with several)."""

    dataset: ScannedDataset
    latent_store: CacheStore
    latent_keys: np.ndarray  # (n,) "S32": latent key of each sample
    text_store: CacheStore
    text_keys: np.ndarray  # (n,) "S32": text key of each sample's (first) caption
    variants: CaptionVariants = attrs.field(factory=CaptionVariants.empty)

    def latent_job(self, index: int) -> LatentJob:
        """The caching job of sample ``index``'s latents."""
        return LatentJob(self.dataset.sample(index), self.dataset, self.latent_store, hex_key(self.latent_keys, index))

    def text_job(self, index: int) -> TextJob:
        """The caching job of sample ``index``'s (first) caption embedding (its caption is read only if it is
        encoded)."""
        choice = 0 if self.variants.count(index) > 1 else None
        return TextJob(partial(self.dataset.caption, index, choice), self.text_store, hex_key(self.text_keys, index))

    def variant_job(self, row: int) -> TextJob:
        """The caching job of the caption keyed by row ``row`` of :attr:`CaptionVariants.keys`."""
        index, choice = self.variants.owner(row)
        return TextJob(partial(self.dataset.caption, index, choice), self.text_store, hex_key(self.variants.keys, row))

    def text_key(self, index: int, choice: int) -> str:
        """The text key of caption ``choice`` of sample ``index``."""
        if choice == 0:
            return hex_key(self.text_keys, index)
        return hex_key(self.variants.keys, self.variants.key_row(index, choice))

    @property
    def nbytes(self) -> int:
        """Bytes of per-sample keys held."""
        return int(self.latent_keys.nbytes + self.text_keys.nbytes + self.variants.nbytes)


def caption_choice(seed: int, epoch: int, position: int, dataset: int, index: int, count: int) -> int:
    """Which of its ``count`` captions sample ``index`` of dataset ``dataset`` trains with in global batch
    ``position`` of ``epoch``: uniform, and the same in every process and after a resume (a digest of the run's
    seed and the sample's place, not a random generator's state)."""
    if count == 1:
        return 0
    digest = hashlib.blake2b(f"{seed}\0{epoch}\0{position}\0{dataset}\0{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


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

    def caption_choice(self, dataset: int, index: int, epoch: int, position: int) -> int:
        """Which caption sample ``index`` of dataset ``dataset`` trains with in global batch ``position`` of
        ``epoch`` (:func:`caption_choice`; 0 for a sample with one)."""
        count = self.caches[dataset].variants.count(index)
        return caption_choice(self.planner.seed, epoch, position, dataset, index, count)

    def text_entry(self, dataset: int, index: int, epoch: int = 0, position: int = 0) -> tuple[CacheStore, str]:
        """(store, key) of the caption embedding sample ``index`` of dataset ``dataset`` trains with in global batch
        ``position`` of ``epoch`` (:meth:`caption_choice`)."""
        caches = self.caches[dataset]
        return caches.text_store, caches.text_key(index, self.caption_choice(dataset, index, epoch, position))

    @property
    def nbytes(self) -> int:
        """Bytes of per-image bookkeeping held for the run: index tables, placements, cache keys and the epoch plan
        (the planner's bucket codes are the placements' own array)."""
        return int(sum(d.nbytes for d in self.datasets) + sum(c.nbytes for c in self.caches) + self.planner.nbytes)


def _empty_caption() -> str:
    return ""


def caption_keys(dataset: ScannedDataset, text_key: Callable[[str], str]) -> tuple[np.ndarray, CaptionVariants]:
    """The text keys (by ``text_key``, from :func:`~simpletuner.core.training.caching.text_keys`) of each sample's
    (first) caption, and its further captions'. They are made from the captions' digests in the dataset's index:
    no caption file is read unless its embedding is missing."""
    digests = dataset.caption_digests()
    keys = text_key_column(digests, text_key)
    return keys, _caption_variants(dataset, digests, keys, text_key)


def _caption_variants(dataset: ScannedDataset, caption_digests: np.ndarray, keys: np.ndarray,
                      text_key: Callable[[str], str]) -> CaptionVariants:
    """The further captions of ``dataset``'s samples with several (the lines of their caption text, each with the
    copies ``caption_shuffle`` makes), keyed from their text's digest without reading it
    (:func:`caption_choice_digest`); the first caption's key replaces the sample's in ``keys``, which held the whole
    text's."""
    counts = dataset.caption_counts()
    samples = np.flatnonzero(counts > 1)
    if not len(samples):
        return CaptionVariants.empty()
    shuffle, copies = dataset.shuffle, dataset.caption_copies
    settings = shuffle.settings_digest(dataset.seed) if shuffle is not None else b""
    keep_original = shuffle is None or shuffle.include_original
    further = []
    for index in samples.tolist():
        digest, lines = caption_digests[index].tobytes(), dataset.caption_lines(index)
        choices = [caption_choice_digest(digest, lines, copies, choice, settings, keep_original)
                   for choice in range(int(counts[index]))]
        choice_keys = [bytes.fromhex(text_key(d.hex())) for d in choices]
        keys[index] = choice_keys[0]
        further.append(b"".join(choice_keys[1:]))
    offsets = np.concatenate(([0], np.cumsum(counts[samples] - 1))).astype(np.int64)
    return CaptionVariants(samples.astype(np.int64), offsets, np.frombuffer(b"".join(further), dtype="S32").copy())


def caption_choice_digest(digest: bytes, lines: int, copies: int, choice: int, settings: bytes,
                          keep_original: bool) -> bytes:
    """The digest standing for caption ``choice`` of a caption text whose digest is ``digest``: line
    ``choice // copies`` of its ``lines`` (:func:`~simpletuner.core.datasets.index.caption_line_digest`; the text's
    own digest for a text of one line), and copy ``choice % copies`` of that (``settings``: the ``caption_shuffle``
    settings' digest); an unshuffled original (``keep_original`` and copy 0) keeps its line's digest, so turning
    ``caption_shuffle`` on re-encodes only the copies."""
    line, copy = divmod(choice, copies)
    base = digest if lines == 1 else caption_line_digest(digest, line)
    if copies == 1 or (keep_original and copy == 0):
        return base
    return hashlib.sha256(b"caption copy %d\0" % copy + settings + base).digest()


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
        keys, variants = caption_keys(dataset, text_key)
        caches.append(DatasetCaches(dataset, CacheStore(storage.latents(entry, cache_root)),
                                    latent_keys_of(dataset, vae_source, index_for(entry) if index_for else None),
                                    text_store(entry), keys, variants))
    first_store = text_store(scanned[0].entry)
    empty = TextJob(_empty_caption, first_store, text_key(hashlib.sha256(b"").hexdigest()))
    planner = EpochPlanner(
        datasets=[DatasetPlan(name=d.entry.id, bucket_names=d.placements.names, bucket=d.placements.bucket,
                              repeats=d.entry.repeats, probability=d.entry.probability) for d in scanned],
        batch_size=batch_size, world_size=world_size, seed=seed, oversubscribe=oversubscribe,
        accumulation=accumulation,
    )
    return TrainingData(list(scanned), caches, empty, planner)
