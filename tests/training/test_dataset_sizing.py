"""Dataset sizing against the effective batch (train_batch_size × processes × gradient_accumulation_steps):
undersized buckets fail before any encoder loads, with the computed fixes; oversubscription repeats only them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from training_helpers import events_of, only_run

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.training.sampler import DatasetPlan, EpochPlanner
from simpletuner.core.workspace import Workspace

plan = DatasetPlan.from_labels

# one dataset: bucket "big" of 8 images, "small" of 3, "tiny" of 1
SHAPES = ["big"] * 8 + ["small"] * 3 + ["tiny"]


@pytest.mark.parametrize("world_size", [1, 2])
def test_undersized_buckets_fail_with_every_fix(world_size: int) -> None:
    planner = EpochPlanner([plan("shapes", SHAPES), plan("other", ["big"] * 16)], batch_size=2,
                           world_size=world_size, accumulation=2)
    effective = 4 * world_size
    assert planner.effective_batch == effective
    with pytest.raises(SimpleTunerError) as caught:
        planner.check_sizes()
    message = str(caught.value)
    assert f"effective batch of {effective} (train_batch_size 2 × {world_size} process(es) × " \
           "gradient_accumulation_steps 2)" in message
    assert "shapes/small has 3" in message and "shapes/tiny has 1" in message and "other/" not in message
    assert f"repeats ≥ {effective - 1} on shapes" in message  # the single image needs effective − 1 extra passes
    for fix in ("smaller train_batch_size", "fewer GPUs", "less gradient_accumulation_steps", "more images",
                "allow_dataset_oversubscription"):
        assert fix in message
    if world_size == 2:
        assert "shapes/big" not in message
    # the computed repeats are enough
    fixed = EpochPlanner([plan("shapes", SHAPES, repeats=effective - 1)], batch_size=2,
                         world_size=world_size, accumulation=2)
    assert fixed.check_sizes() == []


@pytest.mark.parametrize("world_size", [1, 2])
def test_oversubscription_repeats_only_undersized_buckets(world_size: int) -> None:
    planner = EpochPlanner([plan("shapes", SHAPES)], batch_size=2, world_size=world_size, accumulation=2,
                           oversubscribe=True)
    effective = 4 * world_size
    warnings = planner.check_sizes()
    copies = {"small": -(-effective // 3), "tiny": effective}
    assert sorted(warnings) == sorted(
        f"allow_dataset_oversubscription: shapes/{bucket} has {count} image(s); repeated {copies[bucket]}× per "
        f"epoch to fill the effective batch of {effective} (train_batch_size 2 × {world_size} process(es) × "
        f"gradient_accumulation_steps 2)" for bucket, count in (("small", 3), ("tiny", 1)))
    seen = Counter(ref.bucket for batch in planner.epoch(0) for ref in batch)
    assert seen["big"] == 8  # a full-sized bucket is not repeated
    assert seen["small"] == (3 * copies["small"]) // (2 * world_size) * 2 * world_size
    assert seen["tiny"] == effective
    # a dataset with its own repeats is left alone, and still refused
    own = EpochPlanner([plan("shapes", SHAPES, repeats=1)], batch_size=2, world_size=world_size,
                       accumulation=2, oversubscribe=True)
    with pytest.raises(SimpleTunerError, match="leaves datasets with their own repeats"):
        own.check_sizes()



def test_engine_refuses_before_caching_and_pads_when_allowed(make_env: Callable[..., str],
                                                             run_env: Callable[..., Any],
                                                             workspace: Workspace) -> None:
    # 6 demo images in 3 buckets of 2; effective batch 2 × 1 × 2 = 4
    name = make_env("sizing", images=6, train_batch_size=2, gradient_accumulation_steps=2, max_train_steps=2)
    with pytest.raises(SimpleTunerError, match=r"repeats ≥ 1 on shapes"):
        run_env(name)
    assert not list((workspace.root / "cache" / name).rglob("*.safetensors"))  # nothing was encoded
    assert events_of(only_run(workspace.root / "output" / name))[-1]["event"] == "failed"

    config_path = workspace.configs_dir / name / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()),
                                       "allow_dataset_oversubscription": True}))
    result = run_env(name)
    warnings = [e["message"] for e in events_of(result.run_dir, "warning")]
    assert len(warnings) == 3 and all("repeated 2× per epoch to fill the effective batch of 4" in w
                                      for w in warnings)
    assert result.step == 2
    started = events_of(result.run_dir, "run_started")[-1]
    assert started["steps_per_epoch"] == 3  # 3 buckets × 4 samples / 2 per batch / 2
