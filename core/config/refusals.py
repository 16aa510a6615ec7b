"""SimpleTuner options that change *what* is trained and that this version does not implement.

Ignoring one of them would train something other than what the config asks for (a plain LoRA instead of a
ControlNet, the model's own timesteps instead of biased ones), so each is an error naming
the key and the way forward when it asks for something; set to its default (unset, false, 0, SimpleTuner's default
value, or the value that matches what this version does) it loads. The other keys of
:mod:`simpletuner.core.config.legacy` only affect speed, memory, logging, validation images or publishing and warn.

Example::

    config_refusals({"use_bitfit": True, "controlnet": False}, lookup)
    # ['$.use_bitfit: true asks for training the bias terms only (BitFit), which this version does not do; remove
    #   the key or set it to false']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

#: Looks up the effective value of any config key (an option's, or a SimpleTuner key's as written; None if unset).
Lookup = Callable[[str], Any]

_OFF = (None, False, 0.0, "", "none", "null", "false", "no", "off")


def normalized(value: Any) -> Any:
    """A comparable form of a value as SimpleTuner configs write it: ``"1e-4"`` and ``0.0001``, ``"False"`` and
    ``false``, ``"L2"`` and ``"l2"`` compare equal."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) < 2**1023 else value  # beyond any float: compare as written
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false"):
            return text == "true"
        try:
            return float(text)
        except ValueError:
            return text
    return value


def _asks(value: Any, off: tuple[Any, ...]) -> bool:
    """Whether ``value`` asks for something: not unset, false, zero, empty or one of ``off``."""
    value = normalized(value)
    if isinstance(value, list | dict):
        return bool(value)
    return value not in _OFF and value not in tuple(normalized(v) for v in off)


@attrs.frozen
class Refusal:
    """Why a SimpleTuner key is refused: ``what`` it asks SimpleTuner for (``{value}`` is replaced by the value),
    the ``way`` forward, and the values that ask for nothing besides unset, false, zero and empty."""

    what: str
    way: str
    off: tuple[Any, ...] = ()
    #: when given, decides instead of ``off`` whether the value asks for something (it may look at other keys)
    asks: Callable[[Any, Lookup], bool] | None = None

    def problem(self, key: str, value: Any, lookup: Lookup) -> str | None:
        """The error for ``key`` set to ``value``, or None when the value asks for nothing."""
        asking = self.asks(value, lookup) if self.asks is not None else _asks(value, self.off)
        if not asking:
            return None
        shown = json.dumps(value, default=str)
        return f"$.{key}: {shown} asks for {self.what.format(value=value)}, which this version does not do; {self.way}"


_REMOVE_OR_FALSE = "remove the key or set it to false"
_REMOVE = "remove the key"
_TIMESTEPS = ("; training timesteps here are logit-normal, shifted by flow_schedule_shift (or by image size with "
              "flow_schedule_auto_shift)")
_CONDITIONING = Refusal(
    "a conditioning dataset (ControlNet inputs, masks for masked loss, or reference images)",
    "remove it: this version trains on images and their captions only",
)
_WINDOW = Refusal("this dataset only from or until a point of the training", _REMOVE)
_INSTANCE_ONLY = Refusal("instance_prompt as the caption of every dataset's images",
                         "set only_instance_prompt (or caption_strategy instanceprompt) and instance_prompt on each "
                         "dataset in the datasets file instead")
_INSTANCE_FIRST = Refusal("instance_prompt put before the captions of every dataset",
                          "set prepend_instance_prompt and instance_prompt on each dataset in the datasets file "
                          "instead")
_UPSCALE = Refusal("leaving out images that need more than {value} upscaling", _REMOVE)


def _present(value: Any, lookup: Lookup) -> bool:
    return True


def _other_subfolder(expected: str) -> Callable[[Any, Lookup], bool]:
    """Asks for something unless unset or ``expected`` (the folder a pipeline keeps the weights in)."""

    def asks(value: Any, lookup: Lookup) -> bool:
        # SimpleTuner's "none" means the weights sit at the top of the folder, not "unset"
        return value is not None and normalized(value) != expected

    return asks


def _pipeline_folder(component: str) -> str:
    return (f"put it in the {component}/ folder of a pipeline folder and set pretrained_model_name_or_path to that "
            "folder")


def _sd3_other_than_empty(value: Any, lookup: Lookup) -> bool:
    # SimpleTuner reads these for SD3 only; elsewhere they change nothing there either
    return normalized(lookup("model_family")) == "sd3" and _asks(value, ("empty_string",))


_EMPTY_UNCOND = ("remove the key or set empty_string: a dropped caption here is the empty caption as the text "
                 "encoders encode it (caption_dropout_probability)")


CONFIG_REFUSALS: Mapping[str, Refusal] = {
    "control": Refusal("channel-wise control training", _REMOVE_OR_FALSE),
    "controlnet": Refusal("ControlNet training", _REMOVE_OR_FALSE + " (the transformer itself is trained: LoRA, "
                          "LyCORIS or full)"),
    "crepa_enabled": Refusal("the CREPA representation-alignment loss", _REMOVE_OR_FALSE),
    "diff2flow_enabled": Refusal("the Diffusion-to-Flow target bridge", _REMOVE_OR_FALSE),
    "diff2flow_loss": Refusal("a loss on flow-converted predictions", _REMOVE_OR_FALSE),
    "distillation_method": Refusal("distillation ({value}) instead of fine-tuning", _REMOVE),
    "flux_fast_schedule": Refusal("Flux's fast timestep schedule", _REMOVE_OR_FALSE + _TIMESTEPS),
    "flux_lora_target": Refusal("LoRA on the Flux layers SimpleTuner calls {value!r}",
                                "use lora_target_preset (attention, the same layers as SimpleTuner's 'all'; "
                                "attention+mlp; all-linear) and remove this key", off=("all",)),
    "fuse_qkv_projections": Refusal("adapters on fused attention projections", _REMOVE_OR_FALSE),
    "init_lokr_norm": Refusal("a perturbed initialisation of LoKr weights", _REMOVE),
    "input_perturbation": Refusal("input perturbation noise", "remove the key or set 0"),
    "layer_freeze_strategy": Refusal("layers frozen by the {value!r} strategy", "remove the key or set none"),
    "loss_type": Refusal("a {value} loss instead of mean squared error", "remove the key or set l2",
                         off=("l2", "mse")),
    "max_upscale_threshold": _UPSCALE,
    "offset_noise": Refusal("offset noise", _REMOVE_OR_FALSE),
    "only_instance_prompt": _INSTANCE_ONLY,
    "optimizer_config": Refusal("extra optimizer settings ({value})",
                                "use adam_beta1, adam_beta2, adam_weight_decay and adam_epsilon instead"),
    "peft_lora_mode": Refusal("{value} adapters", "remove the key or set standard", off=("standard",)),
    "prediction_type": Refusal("the prediction type {value!r}", "remove the key: each family trains with its own "
                               "prediction target (docs/migrating.md lists them)"),
    "prepend_instance_prompt": _INSTANCE_FIRST,
    "pretrained_t5_model_name_or_path": Refusal(
        "a T5 text encoder from {value!r}", "put it in a pipeline folder with the other components and set "
        "pretrained_model_name_or_path to that folder"),
    "pretrained_transformer_model_name_or_path": Refusal("a transformer from {value!r}",
                                                         _pipeline_folder("transformer")),
    "pretrained_transformer_subfolder": Refusal("the transformer from the subfolder {value!r}",
                                                _pipeline_folder("transformer"), asks=_other_subfolder("transformer")),
    "pretrained_unet_model_name_or_path": Refusal("a UNet from {value!r}", _pipeline_folder("unet")),
    "pretrained_unet_subfolder": Refusal("the UNet from the subfolder {value!r}", _pipeline_folder("unet"),
                                         asks=_other_subfolder("unet")),
    "quantize_activations": Refusal("activations quantised as well as the base model's weights",
                                    _REMOVE_OR_FALSE + "; base_model_precision quantises the weights only"),
    "refiner_training": Refusal("training part of the timestep range only (a refiner or stage expert)",
                                _REMOVE_OR_FALSE + "; every timestep is trained here"),
    "rescale_betas_zero_snr": Refusal("a noise schedule rescaled to zero terminal SNR", _REMOVE_OR_FALSE),
    "revision": Refusal("the Hub revision {value!r} of the weights", "download that revision and set "
                        "pretrained_model_name_or_path to its folder", off=("main",)),
    "sana_complex_human_instruction": Refusal(
        "a complex human instruction of your own (or none) for Sana's captions",
        "remove it and set sana_use_complex_human_instruction: true for diffusers' instruction (the default) or "
        "false for none", asks=_present),
    "sd3_clip_uncond_behaviour": Refusal("{value!r} in place of a dropped caption's CLIP embeddings", _EMPTY_UNCOND,
                                         asks=_sd3_other_than_empty),
    "sd3_t5_uncond_behaviour": Refusal("{value!r} in place of a dropped caption's T5 embeddings", _EMPTY_UNCOND,
                                       asks=_sd3_other_than_empty),
    "scheduled_sampling_max_step_offset": Refusal("scheduled-sampling rollouts", "remove the key or set 0"),
    "slider_lora_target": Refusal("slider LoRA targets", _REMOVE_OR_FALSE),
    "snr_gamma": Refusal("Min-SNR loss weighting", "remove the key or set 0"),
    "t5_padding": Refusal("T5 padding set to {value}", "remove the key or set unmodified", off=("unmodified",)),
    "timestep_bias_strategy": Refusal("timesteps biased by the {value!r} strategy", "remove the key or set none"),
    "tokenizer_max_length": Refusal("captions cut at {value} tokens", "use the family's own setting "
                                    "(flux_t5_max_tokens, sana_max_tokens, pixart_max_tokens) instead"),
    "train_text_encoder": Refusal("training the text encoder", _REMOVE_OR_FALSE),
    "tread_config": Refusal("TREAD token routing (image tokens dropped inside the transformer)", _REMOVE),
    "use_bitfit": Refusal("training the bias terms only (BitFit)", _REMOVE_OR_FALSE),
    "use_soft_min_snr": Refusal("soft Min-SNR loss weighting", _REMOVE_OR_FALSE),
    "data_backend_sampling": Refusal(
        "datasets drawn by probability alone, whatever their size",
        "here every image of every dataset is seen once per epoch, as with auto-weighting: remove the key or set "
        "auto-weighting, and balance datasets with repeats", off=("auto-weighting",)),
    "caption_strategy": Refusal(
        "{value!r} as the caption strategy of datasets that set none",
        "set caption_strategy on each dataset instead (a dataset without one reads .txt files here)",
        off=("textfile",)),
}

DATASET_REFUSALS: Mapping[str, Refusal] = {
    "caption_filter_list": Refusal("captions filtered by a list of phrases", "edit the caption files instead"),
    "conditioning": Refusal("conditioning images generated for ControlNet training",
                            "remove it: this version trains on images and their captions only"),
    "conditioning_data": _CONDITIONING,
    "conditioning_image_embeds": _CONDITIONING,
    "conditioning_type": _CONDITIONING,
    "source_dataset_id": _CONDITIONING,
    "crop_aspect_buckets": Refusal("crops to the aspect ratios {value}",
                                   "remove the key (crop_aspect closest has a fixed set of aspect ratios here)"),
    "end_epoch": _WINDOW,
    "end_step": _WINDOW,
    "start_epoch": _WINDOW,
    "start_step": _WINDOW,
    "grounding": Refusal("spatial grounding annotations", _REMOVE_OR_FALSE),
    "max_upscale_threshold": _UPSCALE,
    "slider_strength": Refusal("slider training", _REMOVE),
    "timestep_sampling_offset": Refusal("timesteps shifted by {value} for this dataset", "remove the key or set 0"),
}


def _number(value: Any) -> str:
    number = normalized(value)
    return f"{number:g}" if isinstance(number, float) else str(value)


def downsample_problem(where: str, values: Mapping[str, Any], resolution: Any) -> str | None:
    """The error for SimpleTuner's downsample-before-crop (``maximum_image_size`` with ``target_downsample_size``).

    SimpleTuner resizes images above ``maximum_image_size`` to ``target_downsample_size`` and crops that to the
    resolution; with only one of the two set it does neither. This version resizes every image to cover its bucket
    and crops, which is the same when the target is the resolution, so only a different target is refused.
    """
    maximum, target = values.get("maximum_image_size"), values.get("target_downsample_size")
    if not (_asks(maximum, ()) and _asks(target, ())):
        return None
    if resolution is not None and normalized(target) == normalized(resolution):
        return None
    crop = f"resolution {_number(resolution)}" if resolution is not None else "the dataset's resolution"
    return (f"{where}.target_downsample_size: {json.dumps(target)} (with maximum_image_size) asks for large images "
            f"to be downsampled to {_number(target)} before cropping to {crop}, which this version does not do "
            "(every image is resized to cover its bucket, then cropped); remove both keys, or set "
            "target_downsample_size to the resolution")


def config_refusals(values: Mapping[str, Any], lookup: Lookup) -> list[str]:
    """Errors for SimpleTuner config keys in ``values`` (as written) that ask for something not done here."""
    problems = [problem for key, value in values.items() if key in CONFIG_REFUSALS
                and (problem := CONFIG_REFUSALS[key].problem(key, value, lookup)) is not None]
    downsample = downsample_problem("$", values, lookup("resolution"))
    return problems + ([downsample] if downsample else [])


def dataset_refusals(where: str, values: Mapping[str, Any], resolution: Any) -> list[str]:
    """Errors for the SimpleTuner keys of one dataset entry (``values``, as written) that ask for something not
    done here; ``resolution`` is the entry's own (None when it sets none)."""
    problems = []
    for key, value in values.items():
        refusal = DATASET_REFUSALS.get(key)
        problem = refusal.problem(key, value, values.get) if refusal is not None else None
        if problem is not None:
            problems.append(problem.replace("$.", f"{where}.", 1))
    downsample = downsample_problem(where, values, resolution)
    return problems + ([downsample] if downsample else [])


#: Every SimpleTuner key refused when it asks for something, in configs and in dataset entries.
REFUSED_KEYS: frozenset[str] = frozenset(CONFIG_REFUSALS) | {"maximum_image_size", "target_downsample_size"}
REFUSED_DATASET_KEYS: frozenset[str] = frozenset(DATASET_REFUSALS) | {"maximum_image_size", "target_downsample_size"}
