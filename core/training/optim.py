"""Optimizers and learning-rate schedules, from well-kept libraries (torch, torch-optimi, transformers,
diffusers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: Devices with torch's fused (single-kernel) AdamW; other devices keep torch's default implementation.
_FUSED_DEVICES = ("cpu", "cuda")


def adamw_implementation(params: Sequence[Any]) -> dict[str, Any]:
    """``{"fused": True}`` when torch's fused AdamW can update every tensor of ``params``, else ``{}`` (torch
    picks its for-each or per-tensor loop).

    The fused kernel updates all parameters in one pass: on the CPU, where torch defaults to a Python loop over
    the tensors, a LoRA's optimizer step gets several times faster. It needs plain floating-point tensors (not
    quantised or sharded subclasses) on a CPU or CUDA device.
    """
    import torch

    plain = (torch.Tensor, torch.nn.Parameter)
    usable = bool(params) and all(type(p) in plain and p.is_floating_point() and p.device.type in _FUSED_DEVICES
                                  for p in params)
    return {"fused": True} if usable else {}


def scaled_learning_rate(core: Any, processes: int) -> float:
    """``learning_rate``, multiplied with ``lr_scale`` by the samples of one optimizer step (batch size ×
    accumulation × ``processes``), or by their square root with ``lr_scale_sqrt`` too."""
    if not core.lr_scale:
        return float(core.learning_rate)
    samples = core.train_batch_size * core.gradient_accumulation_steps * processes
    return float(core.learning_rate * (math.sqrt(samples) if core.lr_scale_sqrt else samples))


def build_optimizer(params: Sequence[Any], core: Any, processes: int = 1, *, on_cpu: bool = False) -> Any:
    """``adamw`` (torch's, fused where :func:`adamw_implementation` allows and the run neither shards nor scales
    fp16 losses; DeepSpeed's CPU Adam in AdamW mode where DeepSpeed steps the optimizer ``on_cpu``), ``adamw_bf16``
    (torch-optimi's AdamW with Kahan-compensated bf16 updates) or ``adafactor`` (transformers', with a fixed
    learning rate), at :func:`scaled_learning_rate` for ``processes`` processes."""
    betas = (core.adam_beta1, core.adam_beta2)
    lr = scaled_learning_rate(core, processes)
    if core.optimizer == "adamw" and on_cpu:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=lr, betas=betas, eps=core.adam_epsilon,
                                weight_decay=core.adam_weight_decay, adamw_mode=True)
    if core.optimizer == "adamw":
        import torch

        from simpletuner.core.distributed import uses_deepspeed

        # DeepSpeed and FSDP2 replace the parameters (flat partitions, DTensors) and fp16 brings a grad scaler:
        # torch's default implementation is the one those paths are known to work with.
        plain = not (uses_deepspeed(core) or core.fsdp_enable or core.mixed_precision == "fp16")
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=core.adam_epsilon,
                                 weight_decay=core.adam_weight_decay,
                                 **(adamw_implementation(params) if plain else {}))
    if core.optimizer == "adamw_bf16":
        import optimi

        return optimi.AdamW(params, lr=lr, betas=betas, eps=core.adam_epsilon,
                            weight_decay=core.adam_weight_decay, kahan_sum=True)
    if core.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, relative_step=False, scale_parameter=False,
                         warmup_init=False, weight_decay=core.adam_weight_decay)
    raise ValueError(f"unknown optimizer {core.optimizer!r}; use adamw, adamw_bf16 or adafactor")


def build_scheduler(optimizer: Any, core: Any, total_steps: int) -> Any:
    """The ``lr_scheduler`` of the config over ``total_steps`` optimizer steps (diffusers' schedules; a polynomial
    one ends at ``lr_end``)."""
    from diffusers.optimization import get_polynomial_decay_schedule_with_warmup, get_scheduler

    if core.lr_scheduler == "polynomial":
        return get_polynomial_decay_schedule_with_warmup(optimizer, num_warmup_steps=core.lr_warmup_steps,
                                                         num_training_steps=total_steps, lr_end=core.lr_end,
                                                         power=core.lr_power)
    return get_scheduler(core.lr_scheduler, optimizer, num_warmup_steps=core.lr_warmup_steps,
                         num_training_steps=total_steps, num_cycles=core.lr_num_cycles, power=core.lr_power)
