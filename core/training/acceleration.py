"""The run's ``accelerate.Accelerator``: mixed precision, CPU or GPU, and DeepSpeed ZeRO or FSDP2 plugins built by
:func:`simpletuner.core.distributed.accelerator_plugins` (the family's transformer blocks are FSDP's default wrap
classes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.distributed import accelerator_plugins, offloads_optimizer, uses_deepspeed
from simpletuner.core.training.attention import avoid_broken_cudnn_attention
from simpletuner.core.training.resolve import TrainingSetupError


def accelerator_kwargs(core: Any, family: Any, *, cuda: bool,
                       resolve_path: Callable[[str], Path] = Path) -> dict[str, Any]:
    """Keyword arguments of ``Accelerator`` for this run; raises :class:`TrainingSetupError` for FSDP2 without GPUs
    (accelerate shards with FSDP only on GPUs: on CPUs it would silently fall back to plain data parallelism).
    DeepSpeed runs on CPUs too, through its CPU accelerator (gloo between processes)."""
    if not cuda and core.fsdp_enable:
        raise TrainingSetupError("fsdp_enable needs CUDA GPUs (accelerate runs FSDP2 only on GPUs) and none is "
                                 "visible; unset fsdp_enable to train on the CPU (deepspeed_config runs there)")
    if core.mixed_precision == "fp16" and not cuda:
        # fp16 autocast with a grad scaler needs a GPU; bf16 is the CPU's half precision (DeepSpeed's too)
        core = attrs.evolve(core, mixed_precision="bf16")
    # DeepSpeed's config carries gradient_accumulation_steps and accelerate refuses a different value of its own;
    # everywhere else the loop accumulates itself, so accelerate must not divide the loss again.
    accumulation = core.gradient_accumulation_steps if uses_deepspeed(core) else 1
    # cpu=True is what makes accelerate join a multi-process CPU run (gloo) instead of N independent ones; accelerate
    # starts DeepSpeed only with cpu=False, and DeepSpeed then picks its CPU accelerator by itself.
    kwargs: dict[str, Any] = {"mixed_precision": core.mixed_precision, "gradient_accumulation_steps": accumulation,
                              "cpu": not cuda and not uses_deepspeed(core)}
    if not cuda and uses_deepspeed(core):
        from accelerate.utils import InitProcessGroupKwargs

        # without a device backend to pick, accelerate would count each DeepSpeed process as a world of its own
        kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
    kwargs.update(accelerator_plugins(core, tuple(getattr(family, "block_classes", ())), resolve_path))
    return kwargs


def build_accelerator(core: Any, family: Any, resolve_path: Callable[[str], Path] = Path) -> Any:
    """The run's Accelerator."""
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    accelerator = Accelerator(**accelerator_kwargs(core, family, cuda=cuda, resolve_path=resolve_path))
    if uses_deepspeed(core):
        # While accelerate's ZeRO-3 config is registered, transformers loads every model partitioned across the
        # processes (deepspeed.zero.Init); the frozen text encoders must load whole. DeepSpeed partitions the
        # trained model itself when it is prepared.
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
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


def steps_optimizer_on_cpu(accelerator: Any) -> bool:
    """Whether DeepSpeed keeps this run's optimizer states off the GPU and steps them on the CPU."""
    plugin = accelerator.state.deepspeed_plugin if is_deepspeed(accelerator) else None
    return plugin is not None and offloads_optimizer(plugin.deepspeed_config)
