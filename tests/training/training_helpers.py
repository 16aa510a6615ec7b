"""Helpers of the training-engine tests (a uniquely named module: test folders share one import namespace)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from simpletuner.plugins.data_backends.local import LocalDataBackend


def events_of(output_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The run's events (of one type)."""
    from simpletuner.core.events import EVENTS_FILE, read_events

    events = read_events(output_dir / EVENTS_FILE)
    return [e for e in events if kind is None or e["event"] == kind]


def only_run(output_dir: Path) -> Path:
    """The one run folder under an output folder (of a test that ran one environment once)."""
    from simpletuner.core.training.run_folders import run_folders

    [run] = run_folders(output_dir)
    return run.path


def flux_pipeline_with_lora(tiny_flux: Path, lora: Path) -> tuple[Any, float]:
    """The tiny FluxPipeline with the LoRA file ``lora`` loaded through its own ``load_lora_weights``, and the mean
    absolute change the LoRA makes to its image (same prompt and seed)."""
    import torch
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(tiny_flux))
    kwargs = dict(prompt="a red circle", height=128, width=128, num_inference_steps=2, guidance_scale=3.5,
                  max_sequence_length=16, output_type="pt")
    base = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
    adapted = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    return pipe, float((adapted - base).abs().mean())


class CountingBackend(LocalDataBackend):
    """A local folder that counts the files read, by path."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()

    def read(self, path: str) -> bytes:
        """The file's bytes, counted."""
        self.reads[path] += 1
        return super().read(path)

