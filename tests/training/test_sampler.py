"""Epoch plans: same-bucket batches, every sample once per epoch across ranks, repeats, probabilities, step math."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.training.loop import position
from simpletuner.core.training.sampler import DatasetPlan, EpochPlanner, steps_per_epoch

pytestmark = pytest.mark.timeout(60)

plan = DatasetPlan.from_labels



def test_each_sample_once_per_epoch_across_ranks() -> None:
    buckets = ["a"] * 8 + ["b"] * 4
    planner = EpochPlanner([plan("d", buckets)], batch_size=2, world_size=2, seed=3)
    for epoch in range(3):
        seen = Counter()
        for batch in planner.epoch(epoch):
            assert len({ref.bucket for ref in batch}) == 1
            parts = [planner.rank_slice(batch, rank) for rank in range(2)]
            assert sum(len(p) for p in parts) == 4
            seen.update((ref.dataset, ref.index) for part in parts for ref in part)
        assert seen == Counter({(0, i): 1 for i in range(12)})
    assert planner.epoch(0) == planner.epoch(0)
    assert planner.epoch(0) != planner.epoch(1)


def test_repeats_and_incomplete_buckets() -> None:
    planner = EpochPlanner([plan("d", ["a"] * 3 + ["b"], repeats=1)], batch_size=2)
    refs = [ref for batch in planner.epoch(0) for ref in batch]
    assert Counter(r.index for r in refs) == Counter({0: 2, 1: 2, 2: 2, 3: 2})
    short = EpochPlanner([plan("d", ["a"] * 3)], batch_size=2)
    assert len(short.epoch(0)) == 1 and short.dropped == {"d/a": 1}
    over = EpochPlanner([plan("d", ["a"])], batch_size=2, oversubscribe=True)
    assert len(over.epoch(0)) == 1 and over.dropped == {}


def test_no_complete_batch_is_a_clear_error() -> None:
    planner = EpochPlanner([plan("d", ["a", "b"])], batch_size=2)
    with pytest.raises(SimpleTunerError, match="allow_dataset_oversubscription"):
        planner.batches_per_epoch()


def test_probability_mixes_datasets_and_zero_excludes() -> None:
    planner = EpochPlanner([plan("x", ["a"] * 40), plan("y", ["a"] * 40, probability=0.0)],
                           batch_size=1)
    assert {ref.dataset for batch in planner.epoch(0) for ref in batch} == {0}
    mixed = EpochPlanner([plan("x", ["a"] * 40), plan("y", ["a"] * 40, probability=0.25)],
                         batch_size=1, seed=1)
    first_half = [batch[0].dataset for batch in mixed.epoch(0)[:40]]
    assert first_half.count(0) > first_half.count(1) > 0


def test_step_math_matches_simpletuner() -> None:
    assert steps_per_epoch(10, 1) == 10
    assert steps_per_epoch(10, 3) == 4
    assert position(0, 10, 3) == (0, 0)
    assert position(3, 10, 3) == (0, 9)
    assert position(4, 10, 3) == (1, 0)
    assert position(9, 10, 3) == (2, 3)


def test_mixed_datasets_give_every_batch_once_in_a_plan_of_arrays() -> None:
    sizes = {"x": 30, "y": 7, "z": 12}
    planner = EpochPlanner([plan(name, ["a"] * count + ["b"] * count, probability=p)
                            for (name, count), p in zip(sizes.items(), (1.0, 0.5, 0.01), strict=True)],
                           batch_size=1, seed=5)
    epoch = planner.epoch(2)
    seen = Counter((ref.dataset, ref.index) for batch in epoch for ref in batch)
    assert seen == Counter({(d, i): 1 for d, count in enumerate(sizes.values()) for i in range(2 * count)})
    assert epoch.samples.dtype == np.int32 and epoch.nbytes == 4 * len(epoch) + 4 * sum(2 * c for c in sizes.values())
    # the rare dataset comes late: most of its batches follow the others' last
    last_of_others = max(k for k, d in enumerate(epoch.dataset.tolist()) if d != 2)
    assert np.count_nonzero(np.flatnonzero(epoch.dataset == 2) > last_of_others) > 12
    assert planner.epoch(2) is epoch  # asked again: kept, not planned again
    assert EpochPlanner(planner.datasets, batch_size=1, seed=5).epoch(2) == epoch  # a function of (seed, epoch)


def test_a_large_plan_is_arrays_not_objects() -> None:
    count = 200_000
    rng = np.random.default_rng(0)
    big = DatasetPlan("big", ("1x1", "3x2", "2x3"), rng.integers(0, 3, count).astype(np.int32))
    planner = EpochPlanner([big], batch_size=4, world_size=2)
    epoch = planner.epoch(0)
    assert len(epoch) == sum(c // 8 for c in np.bincount(big.bucket).tolist())
    batch = epoch[len(epoch) // 2]
    assert len({ref.bucket for ref in batch}) == 1 and len({ref.index for ref in batch}) == 8
    assert all(big.bucket_names[big.bucket[ref.index]] == ref.bucket for ref in batch)
    assert epoch.nbytes < 5 * count
