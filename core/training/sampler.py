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


@attrs.define
class EpochPlanner:
    """Builds each epoch's global batches and a rank's share of them."""

    datasets: Sequence[DatasetPlan]
    batch_size: int
    world_size: int = 1
    seed: int = 0
    oversubscribe: bool = False
    dropped: dict[str, int] = attrs.field(factory=dict)

    @property
    def global_batch(self) -> int:
        """Samples in one global batch."""
        return self.batch_size * self.world_size

    def epoch(self, epoch: int) -> list[list[SampleRef]]:
        """The global batches of ``epoch`` in training order."""
        rng = random.Random(f"{self.seed}:{epoch}")
        per_dataset: list[list[list[SampleRef]]] = []
        self.dropped.clear()
        for d_index, dataset in enumerate(self.datasets):
            by_bucket: dict[str, list[SampleRef]] = {}
            for _ in range(1 + dataset.repeats):
                for s_index, bucket in enumerate(dataset.buckets):
                    by_bucket.setdefault(bucket, []).append(SampleRef(d_index, s_index, bucket))
            batches: list[list[SampleRef]] = []
            for bucket in sorted(by_bucket):
                refs = by_bucket[bucket]
                rng.shuffle(refs)
                if len(refs) % self.global_batch and self.oversubscribe:
                    short = self.global_batch - len(refs) % self.global_batch
                    refs = refs + [refs[i % len(refs)] for i in range(short)]
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
