"""The order of batches in an epoch: same-bucket batches, datasets mixed by probability, ranks sharded.

An epoch's plan is a pure function of (seed, epoch), so a resumed run rebuilds the same plan and skips the batches it
has already trained on. Every batch is global (``batch_size × world_size`` samples of one bucket); each rank takes its
own slice, so across ranks every sample is seen once per epoch (``repeats`` times more for repeated datasets).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import attrs

from simpletuner.core.errors import SimpleTunerError


@attrs.frozen
class SampleRef:
    """A sample of a dataset by index, with its bucket."""

    dataset: int
    index: int
    bucket: str


@attrs.frozen
class DatasetPlan:
    """What the planner needs to know about one dataset."""

    name: str
    buckets: Sequence[str]  # bucket of each sample, by sample index
    repeats: int = 0
    probability: float = 1.0


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

    @property
    def global_batch(self) -> int:
        """Samples in one global batch."""
        return self.batch_size * self.world_size

    @property
    def effective_batch(self) -> int:
        """Samples in one optimizer step: train_batch_size × processes × gradient_accumulation_steps."""
        return self.global_batch * self.accumulation

    def _bucket_sizes(self, dataset: DatasetPlan) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for bucket in dataset.buckets:
            sizes[bucket] = sizes.get(bucket, 0) + 1
        return sizes

    def undersized(self) -> list[UndersizedBucket]:
        """Buckets (of datasets that are sampled at all) smaller than the effective batch, as configured."""
        found = []
        for dataset in self.datasets:
            if dataset.probability <= 0:
                continue
            for bucket, count in sorted(self._bucket_sizes(dataset).items()):
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
        sizes = {d.name: self._bucket_sizes(d) for d in self.datasets}
        return [f"allow_dataset_oversubscription: {name}/{bucket} has {sizes[name][bucket]} image(s); repeated "
                f"{copies}× per epoch to fill the {batch}" for (name, bucket), copies in repeated.items()]

    def epoch(self, epoch: int) -> list[list[SampleRef]]:
        """The global batches of ``epoch`` in training order."""
        rng = random.Random(f"{self.seed}:{epoch}")
        per_dataset: list[list[list[SampleRef]]] = []
        self.dropped.clear()
        repeated = self.oversubscribed()
        for d_index, dataset in enumerate(self.datasets):
            by_bucket: dict[str, list[SampleRef]] = {}
            for s_index, bucket in enumerate(dataset.buckets):
                by_bucket.setdefault(bucket, []).append(SampleRef(d_index, s_index, bucket))
            batches: list[list[SampleRef]] = []
            for bucket in sorted(by_bucket):
                refs = by_bucket[bucket] * repeated.get((dataset.name, bucket), 1 + dataset.repeats)
                rng.shuffle(refs)
                full = len(refs) // self.global_batch * self.global_batch
                if full < len(refs):
                    self.dropped[f"{dataset.name}/{bucket}"] = len(refs) - full
                batches += [refs[i : i + self.global_batch] for i in range(0, full, self.global_batch)]
            rng.shuffle(batches)
            per_dataset.append(batches)
        return self._mix(per_dataset, rng)

    def _mix(self, per_dataset: list[list[list[SampleRef]]], rng: random.Random) -> list[list[SampleRef]]:
        """Interleave datasets: each next batch comes from a dataset drawn by probability among those left."""
        cursors = [0] * len(per_dataset)
        order: list[list[SampleRef]] = []
        while True:
            live = [i for i, batches in enumerate(per_dataset) if cursors[i] < len(batches)
                    and self.datasets[i].probability > 0]
            if not live:
                return order
            pick = rng.choices(live, weights=[self.datasets[i].probability for i in live])[0]
            order.append(per_dataset[pick][cursors[pick]])
            cursors[pick] += 1

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
