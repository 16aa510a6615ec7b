"""Loading SimpleTuner's outputs into stock diffusers pipelines where diffusers has no loader of its own.

A model card's usage code (:mod:`simpletuner.core.usage`) calls these; ``source`` is what the card names: a Hub
repository id, the folder a model was published to, or the weights file itself. Example::

    from diffusers import FluxPipeline
    from simpletuner.core.inference import load_lycoris

    pipeline = FluxPipeline.from_pretrained("black-forest-labs/FLUX.1-dev")
    network = load_lycoris(pipeline, "your-name/your-lokr")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simpletuner.core.training.lycoris import LYCORIS_MODULE, apply_lycoris_weights
from simpletuner.core.training.outputs import LORA_FILE

__all__ = ["LORA_FILE", "load_lycoris", "weights_file"]


def weights_file(source: str | Path, weight_name: str = LORA_FILE) -> Path:
    """The weights file ``source`` names: the file itself, ``weight_name`` in a folder, or ``weight_name`` of a Hub
    repository (downloaded into huggingface_hub's cache). Raises ``FileNotFoundError`` for a folder without it."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / weight_name).is_file():
            raise FileNotFoundError(f"{path} holds no {weight_name}")
        return path / weight_name
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=str(source), filename=weight_name))


def load_lycoris(pipeline: Any, source: str | Path, *, weight_name: str = LORA_FILE, multiplier: float = 1.0,
                 component: str = "transformer") -> Any:
    """Load a LyCORIS file trained by SimpleTuner (LoKr, LoHa, LoCon, ...) onto ``pipeline``'s ``component`` at
    ``multiplier`` and return the LyCORIS network (``network.set_multiplier(m)`` changes its strength,
    ``network.restore()`` takes it off).

    The network becomes a submodule of the component, so ``pipeline.to(...)`` moves it with the weights it adapts.
    Raises ``ValueError`` when the file holds nothing for that component.
    """
    model = getattr(pipeline, component)
    network = apply_lycoris_weights(model, str(weights_file(source, weight_name)), multiplier)
    model.add_module(LYCORIS_MODULE, network)
    return network
