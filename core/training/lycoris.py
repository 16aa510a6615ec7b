"""LyCORIS adapters (LoKr, LoCon, LoHa, full, ...) through ``lycoris-lora``, driven by ``lycoris_config.json``.

The config is SimpleTuner's: ``algo``, ``multiplier``, ``linear_dim``, ``linear_alpha``, ``factor`` and any other
argument of ``lycoris.create_lycoris``, plus ``apply_preset`` (``target_module``, ``target_name``,
``module_algo_map``, ``name_algo_map``, ...) given to ``LycorisNetwork.apply_preset`` first.

The network is registered as a submodule of the trained component (:data:`LYCORIS_MODULE`): its weights then move,
train, synchronise across processes (DDP) and average (EMA) with the component like any other parameter, while the
component's own layers call it through LyCORIS' forward hooks. Its state dict uses LyCORIS' own key names
(``lycoris_<module_path>.<weight>``), which ``lycoris.create_lycoris_from_weights`` loads onto a pipeline's
transformer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from simpletuner.core.config.lycoris_config import ALGORITHMS, CONFIG_KEYS, PRESET_KEYS, lycoris_problems

__all__ = ["ALGORITHMS", "CONFIG_KEYS", "PRESET_KEYS", "LYCORIS_CONFIG_FILE", "LYCORIS_METADATA_KEY", "LYCORIS_MODULE",
           "apply_lycoris_weights", "attach_lycoris", "build_network", "lycoris_config_of", "lycoris_network",
           "lycoris_problems"]

#: Attribute of the trained component that holds the LyCORIS network.
LYCORIS_MODULE = "lycoris_network"
#: File written beside a LyCORIS output with the config that built it.
LYCORIS_CONFIG_FILE = "lycoris_config.json"
#: safetensors header key of that config (LyCORIS' and SimpleTuner's name for it).
LYCORIS_METADATA_KEY = "lycoris_config"

_CLASS_DEFAULTS: dict[str, Any] = {}
_CONFIG_ATTRIBUTE = "simpletuner_config"


def _reset_presets(network_class: Any) -> None:
    """Put LyCORIS' class-level preset back to its defaults: ``apply_preset`` changes the class itself, so a second
    run in one process would otherwise inherit the first one's targets."""
    names = ("ENABLE_CONV", "TARGET_REPLACE_MODULE", "TARGET_REPLACE_NAME", "LORA_PREFIX", "MODULE_ALGO_MAP",
             "NAME_ALGO_MAP", "USE_FNMATCH", "TARGET_EXCLUDE_NAME")
    if not _CLASS_DEFAULTS:
        _CLASS_DEFAULTS.update({name: json.loads(json.dumps(getattr(network_class, name))) for name in names})
    for name, value in _CLASS_DEFAULTS.items():
        setattr(network_class, name, json.loads(json.dumps(value)))


def build_network(model: Any, config: Mapping[str, Any]) -> Any:
    """A LyCORIS network for ``model`` (not yet applied); raises ``ValueError`` for a bad config or one that
    matches no layer of the model."""
    problems = lycoris_problems(config)
    if problems:
        raise ValueError("lycoris config: " + "; ".join(problems))
    from lycoris import LycorisNetwork, create_lycoris

    _reset_presets(LycorisNetwork)
    settings = dict(config)
    preset = settings.pop("apply_preset", None)
    if preset:
        LycorisNetwork.apply_preset(json.loads(json.dumps(preset)))
    network = create_lycoris(model, float(settings.pop("multiplier", 1.0)), settings.pop("linear_dim", 4),
                             settings.pop("linear_alpha", 1), **settings)
    if not network.loras:
        raise ValueError(f"lycoris config matches no layer of {type(model).__name__}; check apply_preset's "
                         f"target_module (class names) and target_name (module paths)")
    return network


def attach_lycoris(model: Any, config: Mapping[str, Any]) -> Any:
    """Build the network, hook it into ``model``'s layers and register it on ``model``; returns it."""
    network = build_network(model, config)
    network.apply_to()
    first = next(model.parameters())
    network.to(device=first.device)
    setattr(network, _CONFIG_ATTRIBUTE, json.loads(json.dumps(dict(config))))
    model.add_module(LYCORIS_MODULE, network)
    return network


def lycoris_config_of(model: Any) -> dict[str, Any] | None:
    """The config the LyCORIS network of ``model`` was built from (None without one)."""
    network = lycoris_network(model)
    return None if network is None else getattr(network, _CONFIG_ATTRIBUTE, None)


def lycoris_network(model: Any) -> Any | None:
    """The LyCORIS network attached to ``model`` (None for a model without one)."""
    modules = getattr(model, "_modules", {})
    return modules.get(LYCORIS_MODULE)


def apply_lycoris_weights(model: Any, path: str, multiplier: float = 1.0) -> Any:
    """Load a saved LyCORIS file onto ``model`` (e.g. ``pipeline.transformer``) with LyCORIS' own loader and hook
    it in; returns the network. Raises ``ValueError`` when the file holds nothing for this model."""
    from lycoris import LycorisNetwork, create_lycoris_from_weights

    _reset_presets(LycorisNetwork)
    network, weights = create_lycoris_from_weights(multiplier, path, model)
    if not network.loras:
        raise ValueError(f"{path} holds no LyCORIS weights for {type(model).__name__}")
    # the loader builds modules with the file's weights in place; loading them again would add FullModule diffs twice
    unplaced = sorted({key.split(".")[0] for key in weights if "." in key} - {lora.lora_name for lora in network.loras})
    if unplaced:
        raise ValueError(f"{path} holds weights {type(model).__name__} has no place for: {unplaced[:3]}")
    network.apply_to()
    first = next(model.parameters())
    network.to(device=first.device, dtype=first.dtype)
    return network
