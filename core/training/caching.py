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
from typing import Any

import attrs

from simpletuner.core.datasets.cache_store import CacheStore
from simpletuner.core.datasets.pixels import load_pixels
from simpletuner.core.datasets.scan import Sample, ScannedDataset

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


def latent_keys(model: Any) -> Callable[[Sample], str]:
    """The latent-cache key of a sample for the VAE source ``model``: ``cache_key(kind="latents", image=content
    hash, model=model, size=bucket size, resized=resized size, crop=crop box)``."""
    model_json = json.dumps(model, default=str)

    def key(sample: Sample) -> str:
        p = sample.placement
        (left, top, right, bottom), (width, height) = p.crop_box, p.resized
        text = (f'{{"crop":[{left},{top},{right},{bottom}],"image":"{sample.content_hash}","kind":"latents",'
                f'"model":{model_json},"resized":[{width},{height}],"size":[{p.width},{p.height}]}}')
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    return key


def latent_key(sample: Sample, model: str) -> str:
    """The latent-cache key: image content, the VAE's source, bucket size and crop box."""
    return latent_keys(model)(sample)


def text_keys(model: Any, family: str, settings: Mapping[str, Any]) -> Callable[[str], str]:
    """The text-cache key of a caption, by its SHA-256 (hex), for the text encoders' source, the family and its text
    settings: ``cache_key(kind="text", caption_sha256=..., model=..., family=..., settings=...)``."""
    rest = json.dumps({"family": family, "kind": "text", "model": model, "settings": dict(settings)}, sort_keys=True,
                      separators=(",", ":"), default=str)[1:]

    def key(caption_sha256: str) -> str:
        return hashlib.sha256(f'{{"caption_sha256":"{caption_sha256}",{rest}'.encode()).hexdigest()

    return key


def _batches(jobs: Sequence[LatentJob], batch_size: int) -> list[list[LatentJob]]:
    by_bucket: dict[str, list[LatentJob]] = {}
    for job in jobs:
        by_bucket.setdefault(job.sample.placement.bucket, []).append(job)
    return [group[i : i + batch_size] for group in by_bucket.values() for i in range(0, len(group), batch_size)]


def _prefetched(batches: list[list[LatentJob]], pool: ThreadPoolExecutor, depth: int) -> Iterator[tuple[list, Any]]:
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


def _valid_by_store(stores_and_keys: Sequence[tuple[CacheStore, str]], record: bool, threads: int) -> list[bool]:
    """Whether each (store, key) has a complete entry: one check per store (see :meth:`CacheStore.valid`)."""
    groups: dict[int, tuple[CacheStore, list[int]]] = {}
    for index, (store, _) in enumerate(stores_and_keys):
        groups.setdefault(id(store), (store, []))[1].append(index)
    valid = [False] * len(stores_and_keys)
    for store, indices in groups.values():
        found = store.valid([stores_and_keys[i][1] for i in indices], threads=threads, record=record)
        for index, ok in zip(indices, found.tolist(), strict=True):
            valid[index] = ok
    return valid


def missing_latents(jobs: Sequence[LatentJob], threads: int = 4, record: bool = True) -> list[LatentJob]:
    """The jobs whose cache entry is absent or damaged (``record``: note what was verified in the manifests)."""
    valid = _valid_by_store([(job.store, job.key) for job in jobs], record, threads)
    return [job for job, ok in zip(jobs, valid, strict=True) if not ok]


def missing_texts(jobs: Sequence[TextJob], threads: int = 4, record: bool = True) -> list[TextJob]:
    """The text jobs whose cache entry is absent or damaged, each key once."""
    unique = list({(id(job.store), job.key): job for job in jobs}.values())
    valid = _valid_by_store([(job.store, job.key) for job in unique], record, threads)
    return [job for job, ok in zip(unique, valid, strict=True) if not ok]


def record_written(jobs: Sequence[LatentJob] | Sequence[TextJob]) -> None:
    """Add what was encoded into the jobs' stores to their manifests."""
    for store in {id(job.store): job.store for job in jobs}.values():
        store.record_written()
