"""PixArt's transformer with diffusers' adapter API.

diffusers' ``PixArtTransformer2DModel`` lacks ``PeftAdapterMixin`` (``add_adapter``, ``load_lora_adapter``,
``set_adapters``) and ``PixArtSigmaPipeline`` has no ``load_lora_weights``. The subclass here adds the mixin — the
same one Sana's and Flux's transformers carry — so a LoRA trains, saves and loads in diffusers' own layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffusers import PixArtTransformer2DModel
from diffusers.loaders import PeftAdapterMixin


class PixArtSigmaTransformer(PixArtTransformer2DModel, PeftAdapterMixin):
    """``PixArtTransformer2DModel`` plus diffusers' PEFT adapter methods; loads the same weights and config."""

    def to_json_string(self) -> str:
        """The config as diffusers writes it, under the stock class name: a saved (e.g. fully trained)
        transformer then loads with ``PixArtTransformer2DModel`` and in any ``PixArtSigmaPipeline`` folder."""
        config = json.loads(super().to_json_string())  # type: ignore[misc]  # diffusers' mixins are untyped
        config["_class_name"] = PixArtTransformer2DModel.__name__
        return json.dumps(config, indent=2, sort_keys=True) + "\n"


def with_adapter_support(transformer: Any) -> PixArtSigmaTransformer:
    """``transformer`` itself when it already has the adapter API, else a :class:`PixArtSigmaTransformer` copy
    (same config, weights, dtype and device)."""
    if isinstance(transformer, PixArtSigmaTransformer):
        return transformer
    copy = PixArtSigmaTransformer.from_config(transformer.config)
    copy.load_state_dict(transformer.state_dict())
    return copy.to(device=transformer.device, dtype=transformer.dtype).eval()


def load_pixart_lora(pipeline: Any, lora: str | Path, adapter_name: str = "default",
                     scale: float = 1.0) -> Any:
    """Load a LoRA file saved by SimpleTuner (diffusers' ``transformer.*`` layout) into a ``PixArtSigmaPipeline``
    and activate it at ``scale``; returns the pipeline."""
    path = Path(lora)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {str(path)!r} does not exist")
    transformer = with_adapter_support(pipeline.transformer)
    if transformer is not pipeline.transformer:
        pipeline.register_modules(transformer=transformer)
    transformer.load_lora_adapter(str(path), prefix="transformer", adapter_name=adapter_name)
    transformer.set_adapters([adapter_name], weights=[scale])
    return pipeline
