"""Latents encoded while training runs (``vae_cache_ondemand``): the caching stage leaves the missing latents to
the batch reader, which encodes a batch's missing entries just before it reads them.

Training then starts as soon as the datasets are scanned, and a dataset read from remote storage is fetched as
training reads it (a Hugging Face dataset shard by shard). The reader runs in its own thread with a VAE of its own,
so validation, which loads and parks the pipeline's VAE between steps, never moves the one being used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from simpletuner.core.training.caching import LazyJobs, encode_latents

if TYPE_CHECKING:
    from simpletuner.core.training.data import TrainingData
    from simpletuner.core.training.sampler import SampleRef

#: Makes the encoder when it is first needed: ``encoder()(pixels) -> latents``.
EncoderFactory = Callable[[], Callable[[Any], Any]]


class OnDemandLatents:
    """The latents still missing when training starts, encoded batch by batch as the reader reaches them.

    ``missing`` are the caching check's jobs (one per missing key); every sample with one of those keys is pending,
    a bit per sample. ``calls`` counts encoder calls; the stores note what was written (see :meth:`record`).
    """

    def __init__(self, data: TrainingData, missing: LazyJobs, encoder: EncoderFactory, batch_size: int) -> None:
        self._data = data
        self._encoder_factory = encoder
        self._encoder: Callable[[Any], Any] | None = None
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._pending = []
        for number, caches in enumerate(data.caches):
            keys = caches.latent_keys[missing.made_from[missing.made_by == number]]
            self._pending.append(np.isin(caches.latent_keys, keys) if len(keys) else
                                 np.zeros(len(caches.latent_keys), dtype=bool))
        self._written: set[str] = set()  # keys encoded by this process (samples sharing a key are encoded once)
        self.calls = 0

    def ensure(self, refs: Sequence[SampleRef]) -> None:
        """Encode and write the latents of ``refs`` that are missing, in one same-bucket batch per bucket."""
        import torch

        with self._lock:
            jobs = {}
            for ref in refs:
                if not self._pending[ref.dataset][ref.index]:
                    continue
                self._pending[ref.dataset][ref.index] = False
                job = self._data.caches[ref.dataset].latent_job(ref.index)
                if job.key not in self._written:
                    jobs[job.key] = job
            if not jobs:
                return
            if self._encoder is None:
                self._encoder = self._encoder_factory()
            with torch.no_grad():
                self.calls += encode_latents(list(jobs.values()), self._encoder, self._batch_size, threads=1)
            self._written.update(jobs)

    def record(self) -> None:
        """Add what this process encoded to the caches' manifests (after an encoding the reader may still be
        finishing: the reader thread is not waited for when training ends)."""
        with self._lock:
            for caches in self._data.caches:
                caches.latent_store.record_written()
