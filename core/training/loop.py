"""The optimizer-step loop: gradient accumulation, clipping, scheduling, metrics, checkpoints and validation points.

Step math follows SimpleTuner: an epoch of B global batches has ceil(B / gradient_accumulation_steps) optimizer
steps; the last one of an epoch may accumulate fewer batches. The data position is a function of the global step,
so a resumed run continues on the batch the saved run would have trained next.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from simpletuner.core.training.loader import BatchStream
from simpletuner.core.training.sampler import steps_per_epoch

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from simpletuner.core.config.core_options import CoreOptions
    from simpletuner.core.interfaces import ModelFamily
    from simpletuner.core.training.data import TrainingData


@attrs.define
class StepMetrics:
    """What one optimizer step reports."""

    step: int
    epoch: int
    loss: float
    lr: float
    grad_norm: float
    it_per_s: float
    eta_s: float
    data_wait_s: float

    def scalars(self) -> dict[str, float]:
        """The values sent to trackers."""
        return {"loss": self.loss, "lr": self.lr, "grad_norm": self.grad_norm, "it_per_s": self.it_per_s,
                "epoch": float(self.epoch)}


@attrs.frozen
class LoopState:
    """Everything the loop needs, from the run's stages (:mod:`simpletuner.core.training.stages`)."""

    accelerator: Accelerator
    family: ModelFamily
    model: torch.nn.Module
    params: list[torch.nn.Parameter]
    optimizer: Any  # accelerate's wrapper of the torch optimizer
    scheduler: Any  # a torch learning-rate scheduler
    generator: torch.Generator
    data: TrainingData
    core: CoreOptions
    batches_per_epoch: int
    total_steps: int
    start_step: int
    dtype: torch.dtype
    #: The empty caption's cached embedding, for caption dropout (None when no dataset drops captions).
    empty_text: dict[str, torch.Tensor] | None = None


def position(step: int, batches: int, accumulation: int) -> tuple[int, int]:
    """(epoch, first batch index) of optimizer step ``step`` (0-based)."""
    per_epoch = steps_per_epoch(batches, accumulation)
    return step // per_epoch, (step % per_epoch) * accumulation


def _to_device(text: dict[str, Any], device: Any, dtype: Any) -> dict[str, Any]:
    return {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype, non_blocking=True)
            for k, v in text.items()}


def _drop_captions(state: LoopState, text: dict[str, Any]) -> dict[str, Any]:
    """Replace captions by the empty caption's embedding with ``caption_dropout_probability``."""
    import torch

    p = state.core.caption_dropout_probability
    if p <= 0 or state.empty_text is None:
        return text
    batch = next(iter(text.values())).shape[0]
    drop = torch.rand(batch, generator=state.generator, device=state.generator.device) < p
    if not bool(drop.any()):
        return text
    out = {}
    for name, values in text.items():
        empty = state.empty_text[name].to(device=values.device, dtype=values.dtype)
        mask = drop.to(values.device).view(-1, *([1] * (values.dim() - 1)))
        out[name] = torch.where(mask, empty.unsqueeze(0).expand_as(values), values)
    return out


def _base_model_target(acc: Any, model: Any, family: Any, trained: dict[str, Any], inputs: dict[str, Any],
                       text: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` with the base model's own prediction (the adapter turned off, no gradient) as the target: what a
    regularisation dataset's batch trains toward, so the adapter learns to leave those images as they were."""
    import torch

    from simpletuner.core.training.adapter import adapter_off

    with torch.no_grad(), adapter_off(acc.unwrap_model(model)):
        target = family.predict(trained, inputs, text)
    wanted = inputs["target"].shape
    if target.shape != wanted and target.shape[2:] == wanted[2:] and target.shape[1] > wanted[1]:
        target = target[:, : wanted[1]]  # a learned variance (PixArt) stays out of the target, as of the loss
    return {**inputs, "target": target.detach()}


def _measure_and_clip(acc: Any, params: list[Any], max_norm: float, method: str = "norm") -> Any:
    """The gradients' total norm before clipping (a tensor, or None where DeepSpeed keeps it to itself), clipped
    when ``max_norm`` is positive: to that total norm, or with ``method`` ``value`` each value to ±``max_norm``.

    Plain and data-parallel runs call torch directly, as accelerate would after its checks for sharded layouts;
    without clipping they only measure the norm (``clip_grad_norm_`` with an infinite bound would also multiply
    every gradient by 1). Sharded runs keep accelerate's path, which knows their layout (and clips by norm: the
    config check refuses value clipping there).
    """
    import torch
    from accelerate.utils import DistributedType

    if acc.distributed_type not in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        return acc.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf)
    acc.unscale_gradients()  # fp16: clip and report the true gradients
    if max_norm > 0 and method == "norm":
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if max_norm > 0:
        torch.nn.utils.clip_grad_value_(params, max_norm)
    return norm


def _steppable(acc: Any, optimizer: Any) -> Any:
    """The optimizer whose ``step``/``zero_grad`` the loop calls: accelerate's wrapper where it adds behaviour (a
    grad scaler, DeepSpeed, XLA, ...), else the optimizer it wraps, which it would call anyway (the loop steps
    only at synchronised gradients) after looking up optional packages on every step."""
    from accelerate.utils import DistributedType

    inner = getattr(optimizer, "optimizer", None)
    plain = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    if inner is None or getattr(optimizer, "scaler", None) is not None or acc.distributed_type not in plain:
        return optimizer
    return inner


def _read_back(loss: Any, grad_norm: Any) -> tuple[float, float]:
    """(loss, grad norm) as Python floats, copied from the device in one transfer (each copy waits for the
    device to finish its queued work)."""
    import torch

    if grad_norm is None:
        return loss.item(), 0.0
    if type(grad_norm) is not torch.Tensor:  # DeepSpeed's own float, or a sharded tensor type
        return loss.item(), float(grad_norm)
    loss_value, norm = torch.stack([loss.float(), grad_norm.to(device=loss.device, dtype=torch.float32)]).tolist()
    return loss_value, norm


def train_steps(state: LoopState, on_step: Callable[[StepMetrics], None],
                after_step: Callable[[int], None]) -> int:
    """Train from ``state.start_step`` to ``state.total_steps``; returns the last step reached."""
    import torch

    from simpletuner.core.training.acceleration import is_deepspeed

    core, acc = state.core, state.accelerator
    # DeepSpeed divides the loss by its gradient_accumulation_steps and steps at the boundary it is told of
    deepspeed = is_deepspeed(acc)
    accumulation = core.gradient_accumulation_steps
    per_epoch = steps_per_epoch(state.batches_per_epoch, accumulation)
    epoch, index = position(state.start_step, state.batches_per_epoch, accumulation)
    family = state.family
    geometry = bool(getattr(family, "uses_image_geometry", False))
    stream = BatchStream(state.data, acc.process_index, epoch, index, geometry=geometry,
                         memory_budget=core.batch_memory_cache_mb << 20, pin_memory=acc.device.type == "cuda")
    step = state.start_step
    smoothed: float | None = None
    trained = {family.trained_component: state.model}
    regularising = [d.entry.is_regularisation_data for d in state.data.datasets]
    optimizer = _steppable(acc, state.optimizer)
    state.model.train()
    try:
        while step < state.total_steps:
            started = time.perf_counter()
            wait_before = stream.wait_seconds
            in_epoch = step % per_epoch
            micro = min(accumulation, state.batches_per_epoch - in_epoch * accumulation)
            losses = []
            for i in range(micro):
                batch = next(stream)
                sync = i == micro - 1
                if deepspeed:
                    acc.gradient_state._set_sync_gradients(sync)
                with contextlib.nullcontext() if sync or deepspeed else acc.no_sync(state.model):
                    latents = batch.latents.to(device=acc.device, dtype=state.dtype, non_blocking=True)
                    text = _drop_captions(state, _to_device(batch.text, acc.device, state.dtype))
                    with acc.autocast():
                        if geometry:
                            inputs = family.training_inputs(latents, text, state.generator,
                                                            geometry=batch.geometry.to(acc.device))
                        else:
                            inputs = family.training_inputs(latents, text, state.generator)
                        if regularising[batch.dataset]:
                            inputs = _base_model_target(acc, state.model, family, trained, inputs, text)
                        prediction = family.predict(trained, inputs, text)
                        loss = family.loss(prediction, inputs)
                    stream.quiet()  # the backward pass leaves Python: the reader's turn
                    acc.backward(loss if deepspeed or micro == 1 else loss / micro)
                losses.append(loss.detach())
            grad_norm = _measure_and_clip(acc, state.params, core.max_grad_norm, core.grad_clip_method)
            optimizer.step()
            state.scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            mean_loss = losses[0] if micro == 1 else torch.stack(losses).mean()
            if acc.num_processes > 1:
                mean_loss = acc.reduce(mean_loss, reduction="mean")
            loss_value, norm = _read_back(mean_loss, grad_norm)
            elapsed = time.perf_counter() - started
            smoothed = elapsed if smoothed is None else 0.9 * smoothed + 0.1 * elapsed
            on_step(StepMetrics(
                step=step, epoch=(step - 1) // per_epoch + 1, loss=loss_value,
                lr=float(state.scheduler.get_last_lr()[0]), grad_norm=norm,
                it_per_s=1.0 / smoothed if smoothed > 0 else 0.0, eta_s=smoothed * (state.total_steps - step),
                data_wait_s=stream.wait_seconds - wait_before,
            ))
            after_step(step)
    finally:
        stream.close()
    return step
