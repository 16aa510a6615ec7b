"""Optimizers and learning-rate schedules, from well-kept libraries (torch, torch-optimi, transformers,
diffusers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def build_optimizer(params: Sequence[Any], core: Any) -> Any:
    """``adamw`` (torch), ``adamw_bf16`` (torch-optimi's AdamW with Kahan-compensated bf16 updates) or
    ``adafactor`` (transformers', with a fixed learning rate)."""
    betas = (core.adam_beta1, core.adam_beta2)
    if core.optimizer == "adamw":
        import torch

        return torch.optim.AdamW(params, lr=core.learning_rate, betas=betas, eps=core.adam_epsilon,
                                 weight_decay=core.adam_weight_decay)
    if core.optimizer == "adamw_bf16":
        import optimi

        return optimi.AdamW(params, lr=core.learning_rate, betas=betas, eps=core.adam_epsilon,
                            weight_decay=core.adam_weight_decay, kahan_sum=True)
    if core.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=core.learning_rate, relative_step=False, scale_parameter=False,
                         warmup_init=False, weight_decay=core.adam_weight_decay)
    raise ValueError(f"unknown optimizer {core.optimizer!r}; use adamw, adamw_bf16 or adafactor")


def build_scheduler(optimizer: Any, core: Any, total_steps: int) -> Any:
    """The ``lr_scheduler`` of the config over ``total_steps`` optimizer steps (diffusers' schedules)."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(core.lr_scheduler, optimizer, num_warmup_steps=core.lr_warmup_steps,
                         num_training_steps=total_steps, num_cycles=core.lr_num_cycles, power=core.lr_power)
