"""One seeded image from a diffusers pipeline, with the arguments the pipeline accepts: shared by validation and
the "try it" renders, so that the same prompt, seed and settings give the same image in both."""

from __future__ import annotations

import inspect
import re
from typing import Any

_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*$")


def render_image(pipeline: Any, prompt: str, *, width: int, height: int, steps: int, seed: int,
                 guidance: float | None = None, negative_prompt: str | None = None) -> Any:
    """Render ``prompt`` with ``pipeline`` and return the PIL image. The noise comes from a CPU generator seeded
    with ``seed``, so a seed gives the same image on any device; arguments the pipeline does not take (a negative
    prompt for a guidance-distilled model) are left out."""
    import torch

    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)
    accepted = inspect.signature(pipeline.__call__).parameters
    arguments: dict[str, Any] = {
        "prompt": prompt, "width": width, "height": height, "num_inference_steps": steps,
        "generator": torch.Generator(device="cpu").manual_seed(seed), "output_type": "pil",
    }
    if guidance is not None:
        arguments["guidance_scale"] = guidance
    if negative_prompt and "negative_prompt" in accepted:
        arguments["negative_prompt"] = negative_prompt
    with torch.no_grad():
        return pipeline(**{k: v for k, v in arguments.items() if k in accepted}).images[0]


def parse_resolution(value: Any, where: str) -> list[tuple[int, int]]:
    """``1024`` → ``[(1024, 1024)]``; ``"1024x768,512"`` → ``[(1024, 768), (512, 512)]`` (width × height)."""
    sizes = []
    for part in str(value).split(","):
        match = _SIZE.match(part)
        if isinstance(value, bool) or match is None:
            raise ValueError(f"{where}: expected a size such as 1024 or '1024x768', got {value!r}")
        width = int(match.group(1))
        height = int(match.group(2) or width)
        if width < 8 or height < 8:
            raise ValueError(f"{where}: {width}x{height} is too small; use at least 8 pixels a side")
        sizes.append((width, height))
    return sizes
