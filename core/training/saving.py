"""Saving a run's trained weights under every parallel strategy: checkpoints and the final model.

Single process and data parallelism save from the main process. Under FSDP2 or DeepSpeed the full weights are
gathered first (``accelerator.get_state_dict``: a collective call, so every process makes it), and the sharded
model and optimizer state of a checkpoint goes through accelerate's ``save_state`` / ``load_state``, which know
each strategy's layout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from simpletuner.core.training.acceleration import is_deepspeed, is_sharded
from simpletuner.core.training.checkpoints import CheckpointWriter
from simpletuner.core.training.outputs import LORA_FILE, read_lora, save_full, save_lora, save_lora_layouts
from simpletuner.core.training.sharded_state import dcp_metadata_read_safely, load_checkpoints_weights_only
from simpletuner.core.training.state_files import write_state

EMA_FILE = "ema.safetensors"
FULL_WEIGHTS_FILE = "model.safetensors"
#: Sub-folder of a checkpoint holding accelerate's sharded model and optimizer state (FSDP2, DeepSpeed).
ACCELERATE_STATE = "accelerate_state"


def resume_weights(checkpoint: Path, core: Any, prefix: str) -> dict[str, Any]:
    """The trained weights a checkpoint holds (loaded into the model before it is prepared)."""
    if core.model_type == "full":
        from safetensors.torch import load_file

        return load_file(str(checkpoint / FULL_WEIGHTS_FILE))
    return read_lora(checkpoint / LORA_FILE, prefix)[0]


def restore_sharded_state(accelerator: Any, checkpoint: Path) -> None:
    """Put back accelerate's sharded model and optimizer state (after ``prepare``; a no-op without sharding). Its
    files are read without running code (:mod:`~simpletuner.core.training.sharded_state`)."""
    if not is_sharded(accelerator):
        return
    if is_deepspeed(accelerator):
        load_checkpoints_weights_only(accelerator.deepspeed_engine_wrapped.engine)
    with dcp_metadata_read_safely():
        accelerator.load_state(str(checkpoint / ACCELERATE_STATE))


class WeightSaver:
    """Writes the weights of one run: ``checkpoint`` and ``final`` are called on every process."""

    def __init__(self, accelerator: Any, model: Any, family: Any, core: Any, metadata: Mapping[str, Any],
                 ema: Any | None) -> None:
        self.accelerator = accelerator
        self.model = model
        self.unwrapped = accelerator.unwrap_model(model)
        self.family = family
        self.core = core
        self.metadata = dict(metadata)
        self.ema = ema

    def _gathered(self) -> dict[str, Any] | None:
        """The full model's weights on the main process (every process takes part); None for adapters."""
        if self.core.model_type != "full":
            return None
        return self.accelerator.get_state_dict(self.model)

    def _write(self, folder: Path, step: int, full: dict[str, Any] | None) -> None:
        if self.ema is not None:
            write_state(folder / EMA_FILE, self.ema.state_dict())
        if full is not None:
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in full.items()}, str(folder / FULL_WEIGHTS_FILE))
        else:
            save_lora(folder / LORA_FILE, self.unwrapped, self.family.trained_component, self.core,
                      {**self.metadata, "step": step})

    def checkpoint(self, writer: CheckpointWriter, step: int, *, optimizer: Any, scheduler: Any, generator: Any,
                   state: Mapping[str, Any]) -> tuple[Path, list[Path]]:
        """Write ``checkpoint-<step>``; returns its path and the pruned folders."""
        full = self._gathered()
        sharded = is_sharded(self.accelerator)
        collective: Callable[[Path], None] | None = None
        if sharded:
            def collective(folder: Path) -> None:
                self.accelerator.save_state(str(folder / ACCELERATE_STATE))
        return writer.save(step, weights=lambda folder: self._write(folder, step, full),
                           optimizer=None if sharded else optimizer, scheduler=scheduler, generator=generator,
                           state=state, collective=collective)

    def final(self, output_dir: Path, step: int) -> Path:
        """Write the final model (LoRA/LyCORIS file, with the LoRA's other layouts beside it, or the full
        component's folder); returns its path."""
        full = self._gathered()
        if self.core.model_type == "full":
            output = output_dir / self.family.trained_component
            if self.accelerator.is_main_process:
                save_full(output, self.unwrapped, full)
            return output
        if self.accelerator.is_main_process:
            self._write(output_dir, step, None)
            save_lora_layouts(output_dir, self.unwrapped, self.core, self.family.spec.lora_layouts,
                              {**self.metadata, "step": step})
        return output_dir / LORA_FILE
