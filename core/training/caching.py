"""Filling the latent and text-embedding caches, batched, with progress, encoding only what is missing.

Keys are computed without loading any encoder, so a run whose caches are complete never loads the VAE or the text
encoders at all. Image decoding runs in a thread pool ahead of the encoder so the encoder is never kept waiting.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from simpletuner.core.datasets.cache_store import CacheStore
from simpletuner.core.datasets.pixels import load_pixels
from simpletuner.core.datasets.scan import Sample, ScannedDataset

if TYPE_CHECKING:
    from simpletuner.core.training.data import DatasetCaches

#: Latents encoded but not yet written that caching holds at most.
MAX_PENDING_WRITES = 256
#: Called as ``progress(kind, done, total)`` with kind ``latents`` or ``text``.
Progress = Callable[[str, int, int], None]


@attrs.frozen
class LatentJob:
    """A sample whose latents are cached under ``key`` in ``store``."""

    sample: Sample
    dataset: ScannedDataset
    store: CacheStore
    key: str


@attrs.frozen
class TextJob:
    """A caption whose embedding is cached under ``key`` in ``store``; ``read_caption`` gives its text, which is
    only needed when it is encoded (the key comes from the caption's digest, known from the dataset's index)."""

    read_caption: Callable[[], str]
    store: CacheStore
    key: str

    @property
    def caption(self) -> str:
        """The caption's text."""
        return self.read_caption()


# Keys are computed for every image at every start, so they are made from a JSON text prepared once per run;
# each equals cache_key() of the same parts (the tests hold them to it).


def _latent_text(model_json: str, image: str, left: int, top: int, width: int, height: int, bucket_width: int,
                 bucket_height: int) -> str:
    return (f'{{"crop":[{left},{top},{left + bucket_width},{top + bucket_height}],"image":"{image}",'
            f'"kind":"latents","model":{model_json},"resized":[{width},{height}],'
            f'"size":[{bucket_width},{bucket_height}]}}')


def latent_keys(model: Any) -> Callable[[Sample], str]:
    """The latent-cache key of a sample for the VAE source ``model``: ``cache_key(kind="latents", image=content
    hash, model=model, size=bucket size, resized=resized size, crop=crop box)``."""
    model_json = json.dumps(model, default=str)

    def key(sample: Sample) -> str:
        p = sample.placement
        (left, top, _, _), (width, height) = p.crop_box, p.resized
        text = _latent_text(model_json, sample.content_hash, left, top, width, height, p.width, p.height)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    return key


def latent_key(sample: Sample, model: str) -> str:
    """The latent-cache key: image content, the VAE's source, bucket size and crop box."""
    return latent_keys(model)(sample)


def latent_key_column(dataset: ScannedDataset, model: Any) -> np.ndarray:
    """The latent key of every sample of ``dataset`` (as :func:`latent_keys`), as 32-byte digests, made from the
    dataset's arrays without a :class:`Sample` object per image."""
    model_json = json.dumps(model, default=str)
    placements = dataset.placements
    bucket_sizes = [tuple(int(v) for v in name.split("x")) for name in placements.names]
    images = dataset.table.digest[dataset.rows].tobytes().hex()
    sha256 = hashlib.sha256
    digests = [
        sha256(_latent_text(model_json, images[64 * i : 64 * i + 64], left, top, width, height,
                            *bucket_sizes[bucket]).encode()).digest()
        for i, (bucket, (width, height), (left, top)) in enumerate(
            zip(placements.bucket.tolist(), placements.resized.tolist(), placements.origin.tolist(), strict=True))
    ]
    return np.frombuffer(b"".join(digests), dtype="S32").copy()


def text_keys(model: Any, family: str, settings: Mapping[str, Any]) -> Callable[[str], str]:
    """The text-cache key of a caption, by its SHA-256 (hex), for the text encoders' source, the family and its text
    settings: ``cache_key(kind="text", caption_sha256=..., model=..., family=..., settings=...)``."""
    rest = json.dumps({"family": family, "kind": "text", "model": model, "settings": dict(settings)}, sort_keys=True,
                      separators=(",", ":"), default=str)[1:]

    def key(caption_sha256: str) -> str:
        return hashlib.sha256(f'{{"caption_sha256":"{caption_sha256}",{rest}'.encode()).hexdigest()

    return key


def text_key_column(caption_digests: np.ndarray, key: Callable[[str], str]) -> np.ndarray:
    """The text key (by ``key``, from :func:`text_keys`) of each row of ``caption_digests`` (``n × 32`` bytes), as
    32-byte digests; each distinct caption is keyed once."""
    if not len(caption_digests):
        return np.zeros(0, dtype="S32")
    unique, inverse = np.unique(np.ascontiguousarray(caption_digests).view("S32").ravel(), return_inverse=True)
    hexes = unique.tobytes().hex()
    keys = b"".join(bytes.fromhex(key(hexes[64 * i : 64 * i + 64])) for i in range(len(unique)))
    return np.frombuffer(keys, dtype="S32")[inverse.ravel()]


class LazyJobs(Sequence[Any]):
    """Caching jobs made one at a time when asked for, from two arrays: which maker makes each (a dataset's
    :meth:`~simpletuner.core.training.data.DatasetCaches.latent_job`, say) and from which index. A million missing
    entries hold 8 bytes each until their batch is encoded, not a job object each; a slice is lazy too."""

    def __init__(self, makers: Sequence[Callable[[int], Any]], made_by: np.ndarray, made_from: np.ndarray,
                 stores: Sequence[CacheStore]) -> None:
        self.makers = makers
        self.made_by = made_by  # int32: the maker of each job, an index into ``makers``
        self.made_from = made_from  # int32: the index each job is made from
        self.stores = stores  # every store a job may write to

    @classmethod
    def of(cls, parts: Sequence[tuple[Callable[[int], Any], np.ndarray]], stores: Sequence[CacheStore]) -> LazyJobs:
        """The jobs made by each (maker, indices) of ``parts``, in order."""
        made_by = [np.full(len(indices), number, dtype=np.int32) for number, (_, indices) in enumerate(parts)]
        made_from = [np.asarray(indices, dtype=np.int32) for _, indices in parts]
        empty = np.zeros(0, dtype=np.int32)
        return cls([make for make, _ in parts], np.concatenate(made_by) if parts else empty,
                   np.concatenate(made_from) if parts else empty, stores)

    def __len__(self) -> int:
        return len(self.made_from)

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            return LazyJobs(self.makers, self.made_by[item], self.made_from[item], self.stores)
        return self.makers[int(self.made_by[item])](int(self.made_from[item]))


class _Batches(Sequence[list[Any]]):
    """Batches of jobs by their positions in ``jobs``, each made when asked for."""

    def __init__(self, jobs: Sequence[Any], positions: list[list[int]]) -> None:
        self.jobs = jobs
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, item: Any) -> Any:
        return [self.jobs[i] for i in self.positions[item]]


def _batches(jobs: Sequence[LatentJob], batch_size: int) -> _Batches:
    by_bucket: dict[str, list[int]] = {}
    for position, job in enumerate(jobs):
        by_bucket.setdefault(job.sample.placement.bucket, []).append(position)
    return _Batches(jobs, [group[i : i + batch_size] for group in by_bucket.values()
                           for i in range(0, len(group), batch_size)])


def _prefetched(batches: Sequence[list[LatentJob]], pool: ThreadPoolExecutor, depth: int
                ) -> Iterator[tuple[list, Any]]:
    """Yield (batch, pixels) with up to ``depth`` batches decoded ahead in ``pool``."""
    import torch

    def load(batch: list[LatentJob]) -> Any:
        return torch.stack([load_pixels(j.dataset.backend, j.sample.path, j.sample.placement) for j in batch])

    # only the batches ahead are held: a consumed batch's pixels are freed as soon as it is encoded
    pending: deque[Future[Any]] = deque(pool.submit(load, batches[i]) for i in range(min(depth, len(batches))))
    for index, batch in enumerate(batches):
        pixels = pending.popleft().result()
        ahead = index + depth
        if ahead < len(batches):
            pending.append(pool.submit(load, batches[ahead]))
        yield batch, pixels


def encode_latents(jobs: Sequence[LatentJob], encode: Callable[[Any], Any], batch_size: int,
                   progress: Progress | None = None, threads: int = 4) -> int:
    """Encode ``jobs`` in same-bucket batches and write each latent; returns the number of encoder calls."""
    batches = _batches(jobs, batch_size)
    done = calls = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        writes: deque[Future[None]] = deque()
        for batch, pixels in _prefetched(batches, pool, depth=threads):
            latents = encode(pixels).float().cpu()
            calls += 1
            for job, latent in zip(batch, latents, strict=True):
                writes.append(pool.submit(job.store.write, job.key, {"latents": latent}))
            while len(writes) > MAX_PENDING_WRITES:  # bounded: latents wait in memory only briefly
                writes.popleft().result()
            done += len(batch)
            if progress:
                progress("latents", done, len(jobs))
        for write in writes:
            write.result()
    return calls


def encode_texts(jobs: Sequence[TextJob], encode: Callable[[list[str]], list[dict[str, Any]]], batch_size: int,
                 progress: Progress | None = None) -> int:
    """Encode captions in batches and write each embedding; returns the number of encoder calls."""
    calls = 0
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        embeddings = encode([job.caption for job in batch])
        calls += 1
        for job, tensors in zip(batch, embeddings, strict=True):
            job.store.write(job.key, tensors)
        if progress:
            progress("text", min(start + batch_size, len(jobs)), len(jobs))
    return calls


@attrs.frozen
class Missing:
    """What a check of the caches found: the jobs of the entries to encode, and how many distinct entries it
    checked."""

    jobs: LazyJobs
    checked: int


def missing_latents(caches: Sequence[DatasetCaches], threads: int = 4, record: bool = True) -> Missing:
    """The latent jobs whose cache entry is absent or damaged, one per missing key (identical images placed alike
    share one), each store checked once over its key column (``record``: note what was verified in the
    manifests)."""
    parts = []
    for dataset in caches:
        valid = dataset.latent_store.valid_digests(dataset.latent_keys, threads=threads, record=record)
        missing = np.flatnonzero(~valid)
        _, first = np.unique(dataset.latent_keys[missing], return_index=True)
        parts.append((dataset.latent_job, missing[np.sort(first)]))
    return Missing(LazyJobs.of(parts, [d.latent_store for d in caches]), sum(len(d.latent_keys) for d in caches))


def missing_texts(caches: Sequence[DatasetCaches], extra: Sequence[TextJob] = (), threads: int = 4,
                  record: bool = True) -> Missing:
    """The text jobs whose cache entry is absent or damaged, each key of a store once: the datasets' captions
    (every caption of a sample with several) and ``extra`` jobs (the empty caption)."""
    by_store: dict[int, tuple[CacheStore, list[DatasetCaches], list[TextJob]]] = {}
    for dataset in caches:
        by_store.setdefault(id(dataset.text_store), (dataset.text_store, [], []))[1].append(dataset)
    for job in extra:
        by_store.setdefault(id(job.store), (job.store, [], []))[2].append(job)
    parts: list[tuple[Callable[[int], Any], np.ndarray]] = []
    checked = 0
    for store, datasets, extras in by_store.values():
        columns = [column for d in datasets for column in (d.text_keys, d.variants.keys)]
        columns.append(np.array([bytes.fromhex(j.key) for j in extras], dtype="S32"))
        makers = [maker for d in datasets for maker in (d.text_job, d.variant_job)] + [extras.__getitem__]
        unique, first = np.unique(np.concatenate(columns), return_index=True)
        valid = store.valid_digests(unique, threads=threads, record=record)
        checked += len(unique)
        rows = np.sort(first[~valid])
        offsets = np.cumsum([0] + [len(c) for c in columns])
        part = np.searchsorted(offsets, rows, side="right") - 1
        parts += [(makers[k], rows[part == k] - offsets[k]) for k in range(len(columns)) if (part == k).any()]
    return Missing(LazyJobs.of(parts, [store for store, _, _ in by_store.values()]), checked)


def record_written(jobs: Sequence[LatentJob] | Sequence[TextJob]) -> None:
    """Add what was encoded into the jobs' stores to their manifests."""
    stores = jobs.stores if isinstance(jobs, LazyJobs) else list({id(job.store): job.store for job in jobs}.values())
    for store in stores:
        store.record_written()
