"""Gradient checkpointing of the trained model, optionally only every n-th block
(``gradient_checkpointing_interval``): the blocks in between keep their activations, trading memory back for speed.

diffusers' transformers call ``_gradient_checkpointing_func(block, *args)`` for every block while checkpointing is on;
:class:`BlockCheckpoint` counts those calls within one forward pass and recomputes only every n-th block.

With group offloading (:mod:`~simpletuner.core.training.offload`) the frozen weights are swapped out after each
layer's forward pass, also during the recomputation in the backward pass. torch's non-reentrant checkpoint saves
frozen Parameters themselves while recomputing, so the backward pass would read the swapped-out data; offloaded runs
therefore recompute with the reentrant implementation, saving the weights' on-device data (detached) instead.
"""

from __future__ import annotations

import functools
from typing import Any


def _detach_parameter(tensor: Any) -> Any:
    import torch

    return tensor.detach() if isinstance(tensor, torch.nn.Parameter) else tensor


def _same(tensor: Any) -> Any:
    return tensor


def saving_weight_data() -> Any:
    """A context in which autograd saves a Parameter's current data rather than the Parameter (whose data
    offloading replaces before the backward pass reads it)."""
    import torch

    return torch.autograd.graph.saved_tensors_hooks(_detach_parameter, _same)


class BlockCheckpoint:
    """A gradient-checkpointing function for diffusers models that checkpoints one block in ``interval``."""

    def __init__(self, interval: int = 1, *, offloaded: bool = False) -> None:
        self.interval = interval
        self.offloaded = offloaded
        self.calls = 0
        self.checkpointed = 0

    def start_pass(self, *_: Any) -> None:
        """Reset the block count (a forward pre-hook of the model)."""
        self.calls = 0

    def __call__(self, block: Any, *args: Any, **kwargs: Any) -> Any:
        from torch.utils.checkpoint import checkpoint

        index, self.calls = self.calls, self.calls + 1
        if index % self.interval:
            return block(*args, **kwargs)
        self.checkpointed += 1
        if not self.offloaded:
            return checkpoint(block.__call__, *args, use_reentrant=False, **kwargs)
        return checkpoint(functools.partial(_recompute_saving_data, block, kwargs), *_grad_entry(args),
                          use_reentrant=True)


def _recompute_saving_data(block: Any, kwargs: dict[str, Any], *args: Any) -> Any:
    with saving_weight_data():
        return block(*args, **kwargs)


def _grad_entry(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The reentrant checkpoint passes gradients only to its outputs when an input requires one: the first block's
    hidden states come from frozen layers, so they are made a gradient entry point (nothing upstream trains)."""
    import torch

    if any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return args
    first = next((i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.is_floating_point()), None)
    if first is None:
        return args
    return (*args[:first], args[first].detach().requires_grad_(True), *args[first + 1:])


def enable_checkpointing(model: Any, core: Any, *, offloaded: bool = False) -> BlockCheckpoint | None:
    """Turn on gradient checkpointing as ``core`` asks; returns the checkpointing function when not torch's
    default (an interval, or an offloaded model)."""
    if not core.gradient_checkpointing:
        return None
    interval = core.gradient_checkpointing_interval or 1
    if interval == 1 and not offloaded:
        model.enable_gradient_checkpointing()
        return None
    function = BlockCheckpoint(interval, offloaded=offloaded)
    model.enable_gradient_checkpointing(gradient_checkpointing_func=function)
    model.register_forward_pre_hook(function.start_pass)
    return function
