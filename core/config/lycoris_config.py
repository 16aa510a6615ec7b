"""Checking a ``lycoris_config.json`` (SimpleTuner's LyCORIS settings) without importing LyCORIS: what the config
loader reports, and what :mod:`simpletuner.core.training.lycoris` builds a network from."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any

#: Algorithms of ``lycoris.wrapper.network_module_dict`` (checked against the installed package by a test).
ALGORITHMS = ("lora", "locon", "loha", "lokr", "dylora", "glora", "full", "diag-oft", "boft", "ia3", "tlora")
#: Built-in presets ``preset`` may name (``lycoris.wrapper.PRESET``). LyCORIS reads any other value as the path of a
#: TOML file, which a config must not make the server read: targets are given with ``apply_preset`` instead.
BUILTIN_PRESETS = ("full", "full-lin", "attn-mlp", "attn-only", "unet-only", "unet-transformer-only",
                   "unet-convblock-only", "ia3")
#: ``apply_preset`` keys LyCORIS knows (``lycoris.config_sdk.VALID_PRESET_KEYS``).
PRESET_KEYS = ("enable_conv", "target_module", "target_name", "module_algo_map", "name_algo_map", "lora_prefix",
               "use_fnmatch", "unet_target_module", "unet_target_name", "text_encoder_target_module",
               "text_encoder_target_name", "exclude_name")
#: Top-level keys ``create_lycoris`` reads (besides ``apply_preset``).
CONFIG_KEYS = ("algo", "multiplier", "linear_dim", "linear_alpha", "conv_dim", "conv_alpha", "factor", "preset",
               "dropout", "rank_dropout", "module_dropout", "use_tucker", "use_cp", "use_conv_cp", "disable_conv_cp",
               "use_scalar", "block_size", "train_norm", "constraint", "rescaled", "dora_wd", "wd_on_output",
               "full_matrix", "bypass_mode", "unbalanced_factorization", "decompose_both", "train_llm_adapter",
               "apply_preset")
_NUMBERS = ("multiplier", "linear_alpha", "conv_alpha", "dropout", "rank_dropout", "module_dropout", "constraint")
_INTEGERS = ("linear_dim", "conv_dim", "factor", "block_size")
_LIST_KEYS = ("target_module", "target_name", "unet_target_module", "unet_target_name", "exclude_name",
              "text_encoder_target_module", "text_encoder_target_name")


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _override_problems(where: str, overrides: Any) -> list[str]:
    if not isinstance(overrides, Mapping):
        return [f"{where}: expected an object of name → settings, e.g. {{\"Attention\": {{\"factor\": 16}}}}"]
    problems = []
    for name, settings in overrides.items():
        if not isinstance(settings, Mapping):
            problems.append(f"{where}.{name}: expected an object of settings such as {{\"algo\": \"lokr\"}}")
        elif "algo" in settings and settings["algo"] not in ALGORITHMS:
            problems.append(f"{where}.{name}.algo: unknown algorithm {settings['algo']!r}; choose one of "
                            f"{', '.join(ALGORITHMS)}")
    return problems


def lycoris_problems(config: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a LyCORIS config, each with the fix (empty when it is usable)."""
    problems = []
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(CONFIG_KEYS)}")
    algo = config.get("algo")
    if algo not in ALGORITHMS:
        problems.append(f"algo: {algo!r} is not a LyCORIS algorithm; choose one of {', '.join(ALGORITHMS)}")
    for key in _NUMBERS:
        if key in config and not _number(config[key]):
            problems.append(f"{key}: expected a number, got {config[key]!r}")
    for key in _INTEGERS:
        value = config.get(key)
        if key in config and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"{key}: expected a whole number, got {value!r}")
    if isinstance(config.get("linear_dim"), int) and config["linear_dim"] < 1:
        problems.append("linear_dim: must be at least 1")
    factor = config.get("factor")
    if isinstance(factor, int) and factor != -1 and factor < 1:
        problems.append("factor: must be -1 (automatic) or at least 1")
    if "preset" in config and config["preset"] not in BUILTIN_PRESETS:
        problems.append(f"preset: {config['preset']!r} is not one of LyCORIS' built-in presets "
                        f"({', '.join(BUILTIN_PRESETS)}); preset files are not read, choose layers with "
                        "apply_preset (target_module, target_name)")
    preset = config.get("apply_preset")
    if preset is None:
        return problems
    if not isinstance(preset, Mapping):
        return [*problems, "apply_preset: expected an object such as {\"target_module\": [\"Attention\"]}"]
    unknown = sorted(set(preset) - set(PRESET_KEYS))
    if unknown:
        problems.append(f"apply_preset: unknown key(s) {', '.join(unknown)}; known: {', '.join(PRESET_KEYS)}")
    for key in _LIST_KEYS:
        value = preset.get(key)
        if key in preset and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.append(f"apply_preset.{key}: expected a list of names, got {value!r}")
    for key in ("module_algo_map", "name_algo_map"):
        if key in preset:
            problems += _override_problems(f"apply_preset.{key}", preset[key])
    return problems
