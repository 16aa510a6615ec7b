"""The step loop's lean paths: fused AdamW where it applies, measuring without clipping, one read-back of the
step's values, the optimizer accelerate would call, the batch reader's turns, Flux position ids built once."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.training.loader import BatchStream
from simpletuner.core.training.loop import _measure_and_clip, _read_back, _steppable
from simpletuner.core.training.optim import adamw_implementation, build_optimizer
from simpletuner.core.training.sampler import DatasetPlan, EpochPlanner


def _params_with_grads(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(4, 8, generator=gen)) for _ in range(3)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 10
    return params


def test_adamw_is_fused_for_plain_float_tensors_only() -> None:
    assert adamw_implementation([torch.zeros(2), torch.nn.Parameter(torch.zeros(3))]) == {"fused": True}
    assert adamw_implementation([torch.zeros(2, dtype=torch.int64)]) == {}
    assert adamw_implementation([]) == {}

    class Subclass(torch.Tensor):  # stands for quantised or sharded tensor types
        pass

    assert adamw_implementation([torch.zeros(2).as_subclass(Subclass)]) == {}


@pytest.mark.parametrize(("overrides", "fused"), [
    ({}, True), ({"mixed_precision": "fp16"}, None), ({"fsdp_enable": True}, None),
    ({"deepspeed_config": "zero2"}, None),
])
def test_build_optimizer_fuses_only_unsharded_unscaled_runs(overrides: dict[str, Any], fused: bool | None) -> None:
    core = CoreOptions(**overrides)
    optimizer = build_optimizer(_params_with_grads(), core)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is fused


def test_adamw_stepped_on_the_cpu_by_deepspeed_is_its_cpu_adam_in_adamw_mode() -> None:
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    core = CoreOptions(deepspeed_config="zero2-offload", adam_beta1=0.8, adam_beta2=0.95, adam_weight_decay=0.1)
    optimizer = build_optimizer(_params_with_grads(), core, on_cpu=True)
    assert isinstance(optimizer, DeepSpeedCPUAdam) and optimizer.adam_w_mode
    assert optimizer.defaults["betas"] == (0.8, 0.95) and optimizer.defaults["weight_decay"] == 0.1


def test_fused_adamw_follows_the_default_implementation() -> None:
    runs = []
    for kwargs in ({}, adamw_implementation(_params_with_grads())):
        params = _params_with_grads()
        optimizer = torch.optim.AdamW(params, lr=1e-2, **kwargs)
        for _ in range(5):
            optimizer.step()
        runs.append(torch.cat([p.detach().flatten() for p in params]))
    assert torch.allclose(runs[0], runs[1], atol=1e-6)


def _plain_accelerator() -> Any:
    from accelerate import Accelerator

    return Accelerator(cpu=True, mixed_precision="no")


def test_without_clipping_the_norm_is_measured_and_gradients_left_alone() -> None:
    acc = _plain_accelerator()
    params = _params_with_grads()
    grads = [p.grad.clone() for p in params]
    norm = _measure_and_clip(acc, params, 0.0)
    expected = torch.nn.utils.clip_grad_norm_(_params_with_grads(), math.inf)
    assert torch.equal(norm, expected)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, grads, strict=True))

    clipped = _measure_and_clip(acc, params, 1.0)
    assert torch.equal(clipped, expected)
    assert torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params])).item() == pytest.approx(1.0)
    reference = _params_with_grads()
    assert torch.equal(acc.clip_grad_norm_(reference, 1.0), expected)  # accelerate's own path, bit for bit
    assert all(torch.equal(p.grad, r.grad) for p, r in zip(params, reference, strict=True))


def test_value_clipping_clamps_each_gradient_value_and_reports_the_norm_before() -> None:
    acc = _plain_accelerator()
    params = _params_with_grads()
    expected = torch.nn.utils.clip_grad_norm_(_params_with_grads(), math.inf)
    bound = 0.5 * max(p.grad.abs().max().item() for p in params)
    norm = _measure_and_clip(acc, params, bound, "value")
    assert torch.equal(norm, expected)
    reference = _params_with_grads()
    acc.clip_grad_value_(reference, bound)  # accelerate's own path
    assert all(torch.equal(p.grad, r.grad) for p, r in zip(params, reference, strict=True))
    assert max(p.grad.abs().max().item() for p in params) == pytest.approx(bound)


def test_lr_scale_multiplies_by_the_samples_of_a_step() -> None:
    from types import SimpleNamespace

    from simpletuner.core.training.optim import build_optimizer, scaled_learning_rate

    core = SimpleNamespace(learning_rate=1e-4, lr_scale=False, lr_scale_sqrt=False, train_batch_size=2,
                           gradient_accumulation_steps=2, optimizer="adamw", adam_beta1=0.9, adam_beta2=0.99,
                           adam_epsilon=1e-8, adam_weight_decay=0.0, deepspeed_config=None, fsdp_enable=False,
                           mixed_precision="no")
    assert scaled_learning_rate(core, 4) == 1e-4
    core.lr_scale = True
    assert scaled_learning_rate(core, 4) == pytest.approx(1.6e-3)  # 2 × 2 × 4 samples
    core.lr_scale_sqrt = True
    assert scaled_learning_rate(core, 4) == pytest.approx(4e-4)
    assert build_optimizer(_params_with_grads(), core, 4).param_groups[0]["lr"] == pytest.approx(4e-4)


def test_a_polynomial_schedule_ends_at_lr_end() -> None:
    from types import SimpleNamespace

    from simpletuner.core.training.optim import build_scheduler

    optimizer = torch.optim.SGD(_params_with_grads(), lr=1e-3)
    core = SimpleNamespace(lr_scheduler="polynomial", lr_warmup_steps=0, lr_num_cycles=1, lr_power=1.0, lr_end=4e-7)
    scheduler = build_scheduler(optimizer, core, 10)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(4e-7)


def test_read_back_returns_python_floats() -> None:
    assert _read_back(torch.tensor(0.25), torch.tensor(3.5)) == (0.25, 3.5)
    assert _read_back(torch.tensor(0.25), None) == (0.25, 0.0)
    assert _read_back(torch.tensor(0.25), 2.0) == (0.25, 2.0)  # DeepSpeed hands back a float


def test_the_loop_steps_the_wrapped_optimizer_where_accelerate_adds_nothing() -> None:
    acc = _plain_accelerator()
    inner = torch.optim.AdamW(_params_with_grads(), lr=1e-3)
    prepared = acc.prepare(inner)
    assert _steppable(acc, prepared) is inner
    prepared.scaler = object()  # a grad scaler: accelerate's step must run
    assert _steppable(acc, prepared) is prepared
    assert _steppable(acc, inner) is inner  # never prepared


class _Store:
    """Counts reads; each key's tensors are the key's number."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, key: int) -> dict[str, torch.Tensor]:
        self.reads += 1
        return {"latents": torch.full((2,), float(key)), "prompt_embeds": torch.full((3,), float(key))}


def _stream_data(samples: int) -> tuple[Any, _Store, _Store]:
    latents, text = _Store(), _Store()
    planner = EpochPlanner([DatasetPlan.from_labels("d", ["a"] * samples)], batch_size=1, seed=0)
    data = SimpleNamespace(planner=planner, datasets=[], latent_entry=lambda dataset, index: (latents, index),
                           text_entry=lambda dataset, index, epoch, position: (text, index), ondemand=None)
    return data, latents, text


def _settle(store: _Store, reads: int) -> None:
    deadline = time.monotonic() + 5
    while store.reads < reads and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # time for a further read, were the reader to make one


def test_reader_waits_for_its_turn_once_ahead() -> None:
    data, latents, _ = _stream_data(32)
    stream = BatchStream(data, 0, 0, 0, depth=4)
    try:
        _settle(latents, 3)
        assert latents.reads == 3  # depth - 1 batches ready, then it waits
        next(stream)
        _settle(latents, 3)
        assert latents.reads == 3  # one taken, still two ready: no read outside a turn
        stream.quiet()
        _settle(latents, 4)
        assert latents.reads == 4
    finally:
        stream.close()


def test_a_consumer_that_never_hands_a_turn_still_gets_every_batch_in_order() -> None:
    data, _, _ = _stream_data(8)
    stream = BatchStream(data, 0, 0, 0, depth=3)
    expected = [ref.index for batch in [*data.planner.epoch(0), *data.planner.epoch(1)] for ref in batch]
    try:
        got = [int(next(stream).latents[0, 0]) for _ in range(16)]
    finally:
        stream.close()
    assert got == expected
    assert not any(t.name == "simpletuner-batches" and t.is_alive() for t in threading.enumerate())


def test_reader_depth_below_three_is_refused() -> None:
    with pytest.raises(ValueError, match="depth must be at least 3"):
        BatchStream(_stream_data(4)[0], 0, 0, 0, depth=2)


def test_flux_position_ids_are_built_once_per_shape() -> None:
    from simpletuner.model_families.flux.family import FluxFamily, image_ids

    family = FluxFamily(None, None, None)
    latents = torch.zeros(1, 16, 8, 12)
    first = family.training_inputs(latents, {}, torch.Generator().manual_seed(0))["img_ids"]
    again = family.training_inputs(latents, {}, torch.Generator().manual_seed(0))["img_ids"]
    assert again is first and torch.equal(first, image_ids(8, 12, latents.device, latents.dtype))
    other = family.training_inputs(torch.zeros(1, 16, 4, 4), {}, torch.Generator())["img_ids"]
    assert other.shape == (4, 3)


def test_sample_memory_reads_each_entry_from_storage_once_within_its_budget() -> None:
    from simpletuner.core.training.loader import SampleMemory

    store = _Store()  # entries of 2 + 3 float32 values: 20 bytes
    memory = SampleMemory(budget=40)
    first = memory.read(store, 1)
    assert memory.read(store, 1) is first and store.reads == 1
    memory.read(store, 2)
    memory.read(store, 3)  # over the budget: not kept
    memory.read(store, 3)
    assert store.reads == 4 and memory.used == 40
    assert torch.equal(memory.read(store, 2)["latents"], torch.full((2,), 2.0)) and store.reads == 4


def test_each_epoch_reads_storage_only_for_entries_beyond_memory() -> None:
    data, latents, text = _stream_data(4)
    stream = BatchStream(data, 0, 0, 0, depth=3, memory_budget=0)
    try:
        for _ in range(8):
            next(stream)
    finally:
        stream.close()
    assert latents.reads >= 8  # no memory: every visit reads
    data, latents, text = _stream_data(4)
    stream = BatchStream(data, 0, 0, 0, depth=3)
    try:
        got = [int(next(stream).latents[0, 0]) for _ in range(12)]
    finally:
        stream.close()
    assert sorted(got[:4]) == sorted(got[4:8]) == [0, 1, 2, 3]
    assert latents.reads == 4 and text.reads == 4
