"""The run's ``accelerate.Accelerator``: mixed precision, CPU or GPU, and DeepSpeed ZeRO or FSDP2 plugins built by
:func:`simpletuner.core.distributed.accelerator_plugins` (the family's transformer blocks are FSDP's default wrap
classes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simpletuner.core.distributed import accelerator_plugins, uses_deepspeed
from simpletuner.core.training.attention import avoid_broken_cudnn_attention
from simpletuner.core.training.resolve import TrainingSetupError


def accelerator_kwargs(core: Any, family: Any, *, cuda: bool,
                       resolve_path: Callable[[str], Path] = Path) -> dict[str, Any]:
    """Keyword arguments of ``Accelerator`` for this run; raises :class:`TrainingSetupError` for sharding without
    GPUs (accelerate shards only on GPUs: on CPUs it would silently fall back to plain data parallelism)."""
    if not cuda and (uses_deepspeed(core) or core.fsdp_enable):
        what = "deepspeed_config" if uses_deepspeed(core) else "fsdp_enable"
        raise TrainingSetupError(f"{what} needs CUDA GPUs (accelerate runs DeepSpeed and FSDP2 only on GPUs) and "
                                 f"none is visible; unset {what} to train on the CPU")
    mixed = core.mixed_precision
    if mixed == "fp16" and not cuda:
        mixed = "bf16"  # fp16 autocast with a grad scaler needs a GPU; bf16 is the CPU's half precision
    # DeepSpeed's config carries gradient_accumulation_steps and accelerate refuses a different value of its own;
    # everywhere else the loop accumulates itself, so accelerate must not divide the loss again.
    accumulation = core.gradient_accumulation_steps if uses_deepspeed(core) else 1
    # cpu=True is what makes accelerate join a multi-process CPU run (gloo) instead of N independent ones
    kwargs: dict[str, Any] = {"mixed_precision": mixed, "gradient_accumulation_steps": accumulation, "cpu": not cuda}
    kwargs.update(accelerator_plugins(core, tuple(getattr(family, "block_classes", ())), resolve_path))
    return kwargs


def build_accelerator(core: Any, family: Any, resolve_path: Callable[[str], Path] = Path) -> Any:
    """The run's Accelerator."""
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    accelerator = Accelerator(**accelerator_kwargs(core, family, cuda=cuda, resolve_path=resolve_path))
    if cuda:
        avoid_broken_cudnn_attention(torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float16)
    return accelerator


def is_sharded(accelerator: Any) -> bool:
    """Whether model or optimizer state is split across processes (DeepSpeed or FSDP)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)


def is_deepspeed(accelerator: Any) -> bool:
    """Whether DeepSpeed runs the backward pass and the optimizer step."""
    from accelerate.utils import DistributedType

    return bool(accelerator.distributed_type == DistributedType.DEEPSPEED)
