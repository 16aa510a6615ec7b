"""Group offloading of frozen weights (``enable_group_offload``) through diffusers' hooks: weights live in CPU
memory (or in files under ``group_offload_to_disk_path``) and each group moves to the GPU only for its forward pass.

- Frozen components (text encoders, VAE) are offloaded as ``group_offload_type`` asks.
- The trained model of a LoRA run is offloaded layer by layer (leaf level) *before* its adapter is attached, so the
  hooks hold only the frozen base layers: the LoRA weights, their gradients and optimizer state stay on the GPU, and
  disk offloading can never reload a stale copy of a trained weight. (Offloading blocks that contain trained weights
  would move them, and their gradients, back and forth every step; from disk it would silently undo every update.)

diffusers keeps a group's file when one exists already, so every run offloads into a folder of its own under the
configured path, removed when the run ends.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from simpletuner.core.training.checkpointing import saving_weight_data


def offload_options(core: Any, device: Any, folder: Path | None, *, trained: bool) -> dict[str, Any]:
    """Keyword arguments of ``diffusers.hooks.apply_group_offloading`` for one module."""
    import torch

    onload = torch.device(device)
    cuda = onload.type == "cuda"
    leaf = trained or core.group_offload_type == "leaf_level"
    options: dict[str, Any] = {
        "onload_device": onload, "offload_device": torch.device("cpu"),
        "offload_type": "leaf_level" if leaf else "block_level",
        # streams overlap transfers with compute; they exist only on CUDA
        "use_stream": bool(core.group_offload_use_stream and cuda),
        "offload_to_disk_path": str(folder) if folder is not None else None,
    }
    if not leaf:
        options["num_blocks_per_group"] = core.group_offload_blocks_per_group
    return options


class GroupOffload:
    """Applies group offloading to a run's modules and owns the run's offload folder."""

    def __init__(self, core: Any, device: Any, scratch_parent: Path | None) -> None:
        self.core = core
        self.device = device
        self._scratch: Path | None = None
        if core.group_offload_to_disk_path:
            assert scratch_parent is not None, "a disk path is resolved by the caller"
            scratch_parent.mkdir(parents=True, exist_ok=True)
            self._scratch = Path(tempfile.mkdtemp(prefix="offload-", dir=scratch_parent))

    @classmethod
    def for_run(cls, core: Any, device: Any, resolve_path: Any) -> GroupOffload | None:
        """The run's offloading, or None when ``enable_group_offload`` is off."""
        if not core.enable_group_offload:
            return None
        parent = resolve_path(core.group_offload_to_disk_path) if core.group_offload_to_disk_path else None
        return cls(core, device, parent)

    def _folder(self, name: str) -> Path | None:
        if self._scratch is None:
            return None
        folder = self._scratch / name
        folder.mkdir(exist_ok=True)
        return folder

    def apply(self, module: Any, name: str, *, trained: bool = False) -> Any:
        """Offload ``module`` (a frozen component, or the trained model before its adapter is attached)."""
        from diffusers.hooks import apply_group_offloading

        module.to("cpu")
        apply_group_offloading(module, **offload_options(self.core, self.device, self._folder(name), trained=trained))
        return module

    def close(self) -> None:
        """Remove the run's offload files."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def offloads_trained_model(core: Any) -> bool:
    """Whether the trained model's frozen base layers are offloaded: in PEFT LoRA runs. A full-rank run trains
    every weight, and LyCORIS modules read their base layer's weight outside its forward pass (when it is not on
    the GPU), so those runs offload their text encoders and VAE only."""
    return bool(core.enable_group_offload and core.model_type == "lora" and core.lora_type == "standard")


def keep_saved_weights(model: Any) -> None:
    """Make the backward pass of an offloaded model use the weights its forward pass used.

    autograd saves a layer's weight *Parameter* for the backward pass of the layers outside checkpointed blocks
    (or of every layer without gradient checkpointing); offloading then swaps that Parameter's data for its CPU
    copy, or for an empty tensor when offloading to disk, and the backward pass would read that. During the
    model's forward pass, saved Parameters are therefore detached: the saved tensor keeps the on-device data
    alive until the backward pass has used it.
    """
    contexts: list[Any] = []

    def enter(*_: Any) -> None:
        context = saving_weight_data()
        context.__enter__()
        contexts.append(context)

    def leave(*_: Any) -> None:
        contexts.pop().__exit__(None, None, None)

    model.register_forward_pre_hook(enter)
    model.register_forward_hook(leave, always_call=True)


def trainable_to(module: Any, device: Any) -> None:
    """Put the trainable parameters of an offloaded model on ``device``: an adapter attached after offloading is
    created beside its base layer's weights, which are offloaded at that moment."""
    for param in module.parameters():
        if param.requires_grad:
            param.data = param.data.to(device)
