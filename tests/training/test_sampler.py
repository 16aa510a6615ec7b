"""Epoch plans: same-bucket batches, every sample once per epoch across ranks, repeats, probabilities, step math."""

from __future__ import annotations

from collections import Counter

import pytest

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.training.loop import position
from simpletuner.core.training.sampler import DatasetPlan, EpochPlanner, steps_per_epoch


def test_each_sample_once_per_epoch_across_ranks() -> None:
    buckets = ["a"] * 8 + ["b"] * 4
    planner = EpochPlanner([DatasetPlan("d", buckets)], batch_size=2, world_size=2, seed=3)
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
    planner = EpochPlanner([DatasetPlan("d", ["a"] * 3 + ["b"], repeats=1)], batch_size=2)
    refs = [ref for batch in planner.epoch(0) for ref in batch]
    assert Counter(r.index for r in refs) == Counter({0: 2, 1: 2, 2: 2, 3: 2})
    short = EpochPlanner([DatasetPlan("d", ["a"] * 3)], batch_size=2)
    assert len(short.epoch(0)) == 1 and short.dropped == {"d/a": 1}
    over = EpochPlanner([DatasetPlan("d", ["a"])], batch_size=2, oversubscribe=True)
    assert len(over.epoch(0)) == 1 and over.dropped == {}


def test_no_complete_batch_is_a_clear_error() -> None:
    planner = EpochPlanner([DatasetPlan("d", ["a", "b"])], batch_size=2)
    with pytest.raises(SimpleTunerError, match="allow_dataset_oversubscription"):
        planner.batches_per_epoch()


def test_probability_mixes_datasets_and_zero_excludes() -> None:
    planner = EpochPlanner([DatasetPlan("x", ["a"] * 40), DatasetPlan("y", ["a"] * 40, probability=0.0)],
                           batch_size=1)
    assert {ref.dataset for batch in planner.epoch(0) for ref in batch} == {0}
    mixed = EpochPlanner([DatasetPlan("x", ["a"] * 40), DatasetPlan("y", ["a"] * 40, probability=0.25)],
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
