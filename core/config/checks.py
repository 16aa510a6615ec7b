"""Checks across options and against the installed plugins: the family and flavour exist, the precision is
supported, steps and epochs are not both set, named trackers and methods are installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simpletuner.core.config.performance import performance_problems
from simpletuner.core.config.schema import TrainingConfig
from simpletuner.core.distributed import distributed_problems
from simpletuner.core.plugins import Registry, suggest
from simpletuner.core.specs import ModelFamilySpec, normalize_name


def check_config(config: TrainingConfig, registry: Registry) -> tuple[list[str], list[str]]:
    """Problems (errors) and warnings of a loaded config."""
    core = config.core
    problems: list[str] = []
    warnings: list[str] = []
    families = registry.model_families()

    family = None
    if core.model_family is None:
        names = ", ".join(families) or "none installed"
        problems.append(f"$.model_family: required; one of {names}")
    else:
        family = registry.find_model_family(core.model_family)
        if family is None:
            names = ", ".join(families) or "none installed"
            problems.append(
                f"$.model_family: unknown model family {core.model_family!r}"
                f"{suggest(normalize_name(core.model_family), families)}; installed: {names}"
            )
    if family is not None:
        if family.flavour(core.model_flavour) is None:
            flavours = ", ".join(f.name for f in family.flavours)
            problems.append(f"$.model_flavour: {family.name} has no flavour {core.model_flavour!r}; "
                            f"choose one of {flavours}")
        if core.model_type not in family.model_types:
            problems.append(f"$.model_type: {family.name} does not support {core.model_type!r} training; "
                            f"supported: {', '.join(family.model_types)}")
        if core.model_type == "lora" and core.lora_type not in family.lora_types:
            problems.append(f"$.lora_type: {family.name} does not support {core.lora_type!r} adapters; "
                            f"supported: {', '.join(family.lora_types)}")
        problems += _precision_problems(core.base_model_precision, "base_model_precision", registry,
                                        family.precisions)
        problems += _layout_problems(config, family, families)
        if core.fp8_training and not family.fp8_training:
            problems.append(f"$.fp8_training: {family.name} does not declare float8 training of its layers; turn "
                            "fp8_training off")
        drawn = [key for key, default in (("flow_use_uniform_schedule", False), ("flow_use_beta_schedule", False),
                                          ("flow_sigmoid_scale", 1.0)) if getattr(core, key) != default]
        if drawn and not family.flow_sigma_draws:
            problems.append(f"$.{drawn[0]}: {family.name} draws its training noise levels its own way (see its "
                            "options); remove the key")
        if core.flow_schedule_auto_shift and not family.resolution_shift:
            problems.append(f"$.flow_schedule_auto_shift: {family.name} has no resolution-dependent shift of its "
                            "noise schedule; set flow_schedule_shift (a fixed shift) instead")
        if core.attention_mechanism != "diffusers" and not family.attention_backends:
            problems.append(f"$.attention_mechanism: {family.name}'s attention does not run through diffusers' "
                            f"attention dispatcher, so {core.attention_mechanism!r} cannot be chosen for it; remove "
                            "attention_mechanism (PyTorch SDPA picks its fastest kernel)")
        reason = family.discouraged_precisions.get(core.base_model_precision)
        if reason:
            warnings.append(f"base_model_precision {core.base_model_precision!r} is discouraged for "
                            f"{family.name}: {reason}")
    for key in ("text_encoder_1_precision", "text_encoder_2_precision"):
        problems += _precision_problems(getattr(core, key), key, registry, None)

    if core.max_train_steps > 0 and core.num_train_epochs > 0 and config.sources.get("num_train_epochs"):
        problems.append("$.max_train_steps and $.num_train_epochs are both set; set only one "
                        "(num_train_epochs: 0 to train by steps)")
    if core.max_train_steps == 0 and core.num_train_epochs == 0:
        problems.append("$.max_train_steps and $.num_train_epochs are both 0; set one of them")

    trackers = registry.trackers()
    if "none" in core.report_to and len(core.report_to) > 1:
        problems.append("$.report_to: 'none' cannot be combined with trackers")
    for name in core.report_to:
        if name != "none" and normalize_name(name) not in trackers:
            problems.append(f"$.report_to: unknown tracker {name!r}{suggest(normalize_name(name), trackers)}; "
                            f"installed: {', '.join(trackers) or 'none'}")

    methods = registry.validation_methods()
    validating = core.validation_prompt is not None or "validation_method" in config.sources
    if validating and normalize_name(core.validation_method) not in methods:
        problems.append(f"$.validation_method: unknown validation method {core.validation_method!r}"
                        f"{suggest(normalize_name(core.validation_method), methods)}; "
                        f"installed: {', '.join(methods) or 'none'}")

    executors = registry.executors()
    executor = normalize_name(core.executor)
    if "executor" in config.sources and executor not in executors:
        problems.append(f"$.executor: unknown executor {core.executor!r}{suggest(executor, executors)}; "
                        f"installed: {', '.join(executors) or 'none'}")

    problems += _dora_problems(core)
    if core.flow_use_uniform_schedule and core.flow_use_beta_schedule:
        problems.append("$.flow_use_uniform_schedule and $.flow_use_beta_schedule are both set; noise levels are "
                        "drawn one way: keep one")
    for key in ("flow_beta_schedule_alpha", "flow_beta_schedule_beta"):
        if core.flow_use_beta_schedule and getattr(core, key) <= 0:
            problems.append(f"$.{key}: a Beta distribution's parameters are above 0; set a positive value")
    if core.lr_scheduler == "polynomial" and core.lr_end >= core.learning_rate:
        problems.append(f"$.lr_end: a polynomial schedule decays from learning_rate ({core.learning_rate:g}) to "
                        f"lr_end ({core.lr_end:g}); set lr_end below learning_rate")
    if core.lr_scale_sqrt and not core.lr_scale:
        warnings.append("lr_scale_sqrt: no effect without lr_scale; set lr_scale: true to scale learning_rate")
    problems += distributed_problems(core, quantized=core.base_model_precision != "no_change")
    speed_problems, speed_warnings = performance_problems(core)
    problems += speed_problems
    warnings += speed_warnings

    if core.push_to_hub and not core.hub_model_id:
        problems.append("$.hub_model_id: required when push_to_hub is true (e.g. 'your-name/my-lora')")
    publishers = registry.publishers()
    for name in core.publish_to:
        if normalize_name(name) not in publishers:
            problems.append(f"$.publish_to: unknown publisher {name!r}{suggest(normalize_name(name), publishers)}; "
                            f"installed: {', '.join(publishers) or 'none'}")
    if "hf-hub" in map(normalize_name, core.publish_to) and not core.hub_model_id:
        problems.append("$.hub_model_id: required when publishing to hf-hub (e.g. 'your-name/my-lora')")
    if core.resume_from_checkpoint not in (None, "latest") and not core.resume_from_checkpoint.strip():
        problems.append("$.resume_from_checkpoint: give 'latest' or a checkpoint folder")
    return problems, warnings


def _dora_problems(core: Any) -> list[str]:
    """What a DoRA (``use_dora``) cannot be combined with."""
    problems: list[str] = []
    if not core.use_dora:
        return problems
    if core.model_type != "lora" or core.lora_type != "standard":
        problems.append("$.use_dora: DoRA is a kind of standard LoRA; set model_type: lora and lora_type: "
                        "standard, or remove use_dora")
    if core.base_model_precision != "no_change" or core.fp8_training:
        problems.append("$.use_dora: DoRA rescales each adapted layer by its full weight's norm, which a "
                        "quantised or float8 base layer does not give; use base_model_precision: no_change "
                        "without fp8_training, or a plain LoRA")
    if core.enable_group_offload and core.group_offload_type == "leaf_level":
        problems.append("$.use_dora: DoRA reads each adapted layer's full weight before the layer runs, when "
                        "leaf-level group offloading has not brought it back yet; use group_offload_type: "
                        "block_level")
    if core.lora_save_formats:
        problems.append("$.use_dora: the other LoRA layouts (lora_save_formats) have no place for DoRA's "
                        "magnitudes; save the diffusers file only (lora_save_formats: [])")
    return problems


def _layout_problems(config: TrainingConfig, family: ModelFamilySpec,
                     families: Mapping[str, ModelFamilySpec]) -> list[str]:
    """``lora_save_formats`` names layouts the family can write, for a standard LoRA."""
    core, problems = config.core, []
    where = "$.lora_save_formats"
    if str(config.ignored_values.get("lora_format")).lower() == "comfyui" and core.lora_save_formats == ["kohya"]:
        where = "$.lora_format: 'comfyui' (read as lora_save_formats: [\"kohya\"])"
    for name in core.lora_save_formats:
        if name not in family.lora_layouts:
            having = [f.name for f in families.values() if name in f.lora_layouts]
            offered = ", ".join(family.lora_layouts) or "none"
            problems.append(f"{where}: {family.name} has no {name!r} LoRA layout (it offers: {offered}); "
                            f"families with it: {', '.join(having) or 'none installed'}")
    if core.lora_save_formats and (core.model_type != "lora" or core.lora_type != "standard"):
        problems.append(f"{where}: only a standard LoRA (model_type lora, lora_type standard) is saved in other "
                        "layouts")
    return problems


def _precision_problems(precision: str, key: str, registry: Registry, supported: tuple[str, ...] | None) -> list[str]:
    if precision == "no_change":
        return []
    available = sorted({p for q in registry.quantizers().values() for p in q.precisions})
    if registry.quantizer_for(precision) is None:
        return [f"$.{key}: unknown precision {precision!r}{suggest(precision, available)}; "
                f"available: no_change{''.join(', ' + p for p in available)}"]
    if supported is not None and precision not in supported:
        return [f"$.{key}: {precision!r} is not supported by this model family; "
                f"supported: {', '.join(supported)}"]
    return []
