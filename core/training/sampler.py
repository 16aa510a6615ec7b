"""The order of batches in an epoch: same-bucket batches, datasets mixed by probability, ranks sharded.

An epoch's plan is a pure function of (seed, epoch), so a resumed run rebuilds the same plan and skips the batches it
has already trained on. Every batch is global (``batch_size × world_size`` samples of one bucket); each rank takes its
own slice, so across ranks every sample is seen once per epoch (``repeats`` times more for repeated datasets). Plans
are arrays (four bytes per sample and epoch), never one object per sample.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from simpletuner.core.errors import SimpleTunerError


@attrs.frozen
class SampleRef:
    """A sample of a dataset by index, with its bucket."""

    dataset: int
    index: int
    bucket: str


@attrs.frozen(eq=False)
class DatasetPlan:
    """What the planner needs to know about one dataset: the bucket of each sample, as an index into
    ``bucket_names`` (one small integer per sample, not a string)."""

    name: str
    bucket_names: tuple[str, ...]
    bucket: np.ndarray  # (n,) integer: bucket of each sample, by sample index
    repeats: int = 0
    probability: float = 1.0

    @classmethod
    def from_labels(cls, name: str, labels: Sequence[str], repeats: int = 0, probability: float = 1.0
                    ) -> DatasetPlan:
        """A plan from each sample's bucket name.

        >>> DatasetPlan.from_labels("d", ["1x1", "2x1", "1x1"]).bucket.tolist()
        [0, 1, 0]
        """
        names: dict[str, int] = {}
        codes = np.array([names.setdefault(label, len(names)) for label in labels], dtype=np.int32)
        return cls(name, tuple(names), codes, repeats, probability)

    def bucket_sizes(self) -> dict[str, int]:
        """Samples per bucket (buckets without samples left out)."""
        counts = np.bincount(self.bucket, minlength=len(self.bucket_names))
        return {name: int(count) for name, count in zip(self.bucket_names, counts.tolist(), strict=True) if count}


class EpochPlan(Sequence[list[SampleRef]]):
    """An epoch's global batches, in training order, as two arrays: the dataset of each batch and its sample
    indices (``batches × global batch``); a batch's :class:`SampleRef` objects are made when it is asked for."""

    def __init__(self, datasets: Sequence[DatasetPlan], dataset: np.ndarray, samples: np.ndarray) -> None:
        self.datasets = datasets
        self.dataset = dataset
        self.samples = samples

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: Any) -> Any:
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(len(self)))]
        d_index = int(self.dataset[position])
        plan = self.datasets[d_index]
        indices = self.samples[position].tolist()
        return [SampleRef(d_index, index, plan.bucket_names[int(plan.bucket[index])]) for index in indices]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EpochPlan):
            return NotImplemented
        return np.array_equal(self.dataset, other.dataset) and np.array_equal(self.samples, other.samples)

    __hash__ = None  # type: ignore[assignment]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return int(self.dataset.nbytes + self.samples.nbytes)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random generator of one epoch: a pure function of (seed, epoch)."""
    digest = hashlib.sha256(f"{seed}:{epoch}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "big")))


@attrs.frozen
class UndersizedBucket:
    """A bucket with fewer samples per epoch than the effective batch."""

    dataset: str
    bucket: str
    samples: int  # per epoch, the dataset's repeats included
    user_repeats: int  # the dataset's ``repeats``
    copies_needed: int  # passes over the bucket's images that fill one effective batch

    @property
    def repeats_needed(self) -> int:
        """The dataset ``repeats`` that would fill it (repeats count extra passes)."""
        return self.copies_needed - 1


@attrs.define
class EpochPlanner:
    """Builds each epoch's global batches and a rank's share of them.

    With ``oversubscribe`` the buckets smaller than the effective batch, in datasets without ``repeats`` of their
    own, are repeated just enough to fill one (see :meth:`oversubscribed`); otherwise :meth:`check_sizes` refuses
    them.
    """

    datasets: Sequence[DatasetPlan]
    batch_size: int
    world_size: int = 1
    seed: int = 0
    oversubscribe: bool = False
    dropped: dict[str, int] = attrs.field(factory=dict)
    accumulation: int = 1
    _last: tuple[int, EpochPlan] | None = attrs.field(default=None, init=False, repr=False)

    @property
    def global_batch(self) -> int:
        """Samples in one global batch."""
        return self.batch_size * self.world_size

    @property
    def effective_batch(self) -> int:
        """Samples in one optimizer step: train_batch_size × processes × gradient_accumulation_steps."""
        return self.global_batch * self.accumulation

    def undersized(self) -> list[UndersizedBucket]:
        """Buckets (of datasets that are sampled at all) smaller than the effective batch, as configured."""
        found = []
        for dataset in self.datasets:
            if dataset.probability <= 0:
                continue
            for bucket, count in sorted(dataset.bucket_sizes().items()):
                if count * (1 + dataset.repeats) < self.effective_batch:
                    found.append(UndersizedBucket(dataset.name, bucket, count * (1 + dataset.repeats),
                                                  dataset.repeats, math.ceil(self.effective_batch / count)))
        return found

    def oversubscribed(self) -> dict[tuple[str, str], int]:
        """(dataset, bucket) → passes per epoch for the undersized buckets that oversubscription repeats."""
        if not self.oversubscribe:
            return {}
        return {(u.dataset, u.bucket): u.copies_needed for u in self.undersized() if u.user_repeats == 0}

    def check_sizes(self) -> list[str]:
        """Raise a :class:`SimpleTunerError` listing every bucket too small for the effective batch, with the fixes;
        return one warning per bucket that oversubscription repeats instead."""
        repeated = self.oversubscribed()
        failing = [u for u in self.undersized() if (u.dataset, u.bucket) not in repeated]
        batch = (f"effective batch of {self.effective_batch} (train_batch_size {self.batch_size} × "
                 f"{self.world_size} process(es) × gradient_accumulation_steps {self.accumulation})")
        if failing:
            listed = ", ".join(f"{u.dataset}/{u.bucket} has {u.samples}" for u in failing)
            needed: dict[str, int] = {}
            for u in failing:
                needed[u.dataset] = max(needed.get(u.dataset, 0), u.repeats_needed)
            repeats = ", ".join(f"repeats ≥ {n} on {name}" for name, n in needed.items())
            note = ("; allow_dataset_oversubscription leaves datasets with their own repeats as they are"
                    if self.oversubscribe else "")
            raise SimpleTunerError(
                f"dataset bucket(s) smaller than the {batch}: {listed}. Fix one of: a smaller train_batch_size, "
                f"fewer GPUs (num_processes), less gradient_accumulation_steps, {repeats}, more images in these "
                f"buckets, or allow_dataset_oversubscription: true to repeat undersized buckets{note}"
            )
        sizes = {d.name: d.bucket_sizes() for d in self.datasets}
        return [f"allow_dataset_oversubscription: {name}/{bucket} has {sizes[name][bucket]} image(s); repeated "
                f"{copies}× per epoch to fill the {batch}" for (name, bucket), copies in repeated.items()]

    def epoch(self, epoch: int) -> EpochPlan:
        """The global batches of ``epoch`` in training order (the last epoch asked for is kept: the run asks for
        the same one several times)."""
        kept = self._last
        if kept is not None and kept[0] == epoch:
            return kept[1]
        rng = epoch_rng(self.seed, epoch)
        self.dropped.clear()
        repeated = self.oversubscribed()
        per_dataset = [self._dataset_batches(dataset, repeated, rng) for dataset in self.datasets]
        plan = self._mix(per_dataset, rng)
        self._last = (epoch, plan)
        return plan

    def _dataset_batches(self, dataset: DatasetPlan, repeated: dict[tuple[str, str], int],
                         rng: np.random.Generator) -> np.ndarray:
        """One dataset's batches of an epoch (``batches × global batch`` sample indices), shuffled: within each
        bucket, then the batches."""
        size = self.global_batch
        by_bucket = np.argsort(dataset.bucket, kind="stable")
        counts = np.bincount(dataset.bucket, minlength=len(dataset.bucket_names))
        starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        parts = []
        for code in sorted(range(len(dataset.bucket_names)), key=dataset.bucket_names.__getitem__):
            if not counts[code]:
                continue
            bucket = dataset.bucket_names[code]
            members = by_bucket[starts[code] : starts[code + 1]].astype(np.int32)
            refs = np.tile(members, repeated.get((dataset.name, bucket), 1 + dataset.repeats))
            rng.shuffle(refs)
            full = len(refs) // size * size
            if full < len(refs):
                self.dropped[f"{dataset.name}/{bucket}"] = len(refs) - full
            parts.append(refs[:full].reshape(-1, size))
        batches = np.concatenate(parts) if parts else np.zeros((0, size), dtype=np.int32)
        return batches[rng.permutation(len(batches))]

    def _mix(self, per_dataset: list[np.ndarray], rng: np.random.Generator) -> EpochPlan:
        """Interleave datasets: each next batch comes from a dataset drawn by probability among those left.

        Drawn in rounds rather than batch by batch: a round draws as many picks as batches are left and keeps
        them up to the first pick of a dataset that has none left, which is where the batch-by-batch draw would
        have dropped that dataset from the choice; each round empties at least one dataset."""
        left = np.array([len(b) if d.probability > 0 else 0 for b, d in zip(per_dataset, self.datasets,
                                                                            strict=True)], dtype=np.int64)
        weights = np.array([max(d.probability, 0.0) for d in self.datasets], dtype=np.float64)
        order: list[np.ndarray] = []
        while left.any():
            live = np.flatnonzero(left)
            draws = live[rng.choice(len(live), size=int(left[live].sum()), p=weights[live] / weights[live].sum())]
            cut = int(len(draws))
            for d_index in live.tolist():
                picks = np.flatnonzero(draws == d_index)
                if len(picks) > left[d_index]:
                    cut = min(cut, int(picks[left[d_index]]))
            kept = draws[:cut]
            order.append(kept)
            left -= np.bincount(kept, minlength=len(left))
        dataset = np.concatenate(order).astype(np.int32) if order else np.zeros(0, dtype=np.int32)
        samples = np.zeros((len(dataset), self.global_batch), dtype=np.int32)
        for d_index, batches in enumerate(per_dataset):
            mine = dataset == d_index
            samples[mine] = batches[: int(mine.sum())]
        return EpochPlan(self.datasets, dataset, samples)

    @property
    def nbytes(self) -> int:
        """Bytes held by the kept epoch plan."""
        return self._last[1].nbytes if self._last is not None else 0

    def batches_per_epoch(self) -> int:
        """Global batches in an epoch (the same every epoch); raises when there are none."""
        count = len(self.epoch(0))
        if count == 0:
            raise SimpleTunerError(
                f"no complete batch of {self.global_batch} same-bucket images (train_batch_size {self.batch_size} × "
                f"{self.world_size} process(es)); lower train_batch_size, add images, or set "
                f"allow_dataset_oversubscription"
            )
        return count

    def rank_slice(self, batch: Sequence[SampleRef], rank: int) -> list[SampleRef]:
        """The part of a global batch that ``rank`` trains on."""
        return list(batch[rank * self.batch_size : (rank + 1) * self.batch_size])


def steps_per_epoch(batches: int, accumulation: int) -> int:
    """Optimizer steps per epoch: ceil(batches / gradient_accumulation_steps), as SimpleTuner counts them."""
    return math.ceil(batches / accumulation)
