"""Multi-GPU, multi-node, DeepSpeed ZeRO and FSDP2 settings turned into what accelerate and DeepSpeed take.

Everything here reads :class:`~simpletuner.core.config.CoreOptions`; nothing heavy is imported at module level
(accelerate is imported only by :func:`accelerator_plugins`), so config checks and the server can use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simpletuner.core.errors import ConfigError

if TYPE_CHECKING:
    from simpletuner.core.config.core_options import CoreOptions

#: DeepSpeed presets: ZeRO stage and where optimizer states / parameters are offloaded.
DEEPSPEED_PRESETS: dict[str, dict[str, Any]] = {
    "zero1": {"stage": 1},
    "zero2": {"stage": 2},
    "zero2-offload": {"stage": 2, "offload_optimizer": "cpu"},
    "zero3": {"stage": 3},
    "zero3-offload": {"stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu"},
    "zero3-nvme": {"stage": 3, "offload_optimizer": "nvme", "offload_param": "nvme"},
}


def uses_deepspeed(core: CoreOptions) -> bool:
    """Whether DeepSpeed is configured."""
    return bool(core.deepspeed_config)


def _offload(device: str, nvme_path: str | None) -> dict[str, Any]:
    section: dict[str, Any] = {"device": device, "pin_memory": True}
    if device == "nvme":
        section["nvme_path"] = nvme_path
    return section


def deepspeed_config(core: CoreOptions, resolve_path: Callable[[str], Path] = Path) -> dict[str, Any]:
    """The complete DeepSpeed JSON config for ``core.deepspeed_config`` (a preset, a JSON file or inline JSON).

    Batch size, accumulation, clipping and precision always come from the training config, so the two can never
    disagree. Raises :class:`ConfigError` for an unknown preset, an unreadable file or invalid JSON.
    """
    value = (core.deepspeed_config or "").strip()
    if value in DEEPSPEED_PRESETS:
        preset = DEEPSPEED_PRESETS[value]
        zero: dict[str, Any] = {
            "stage": preset["stage"],
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": 5e8,
        }
        if "offload_optimizer" in preset:
            zero["offload_optimizer"] = _offload(preset["offload_optimizer"], core.offload_param_path)
        if "offload_param" in preset:
            zero["offload_param"] = _offload(preset["offload_param"], core.offload_param_path)
        if preset["stage"] == 3:
            # The final save needs whole 16-bit weights, not one shard per rank.
            zero["stage3_gather_16bit_weights_on_model_save"] = True
        config: dict[str, Any] = {"zero_optimization": zero}
    else:
        config = _read_user_deepspeed_config(value, resolve_path)
    config["train_micro_batch_size_per_gpu"] = core.train_batch_size
    config["gradient_accumulation_steps"] = core.gradient_accumulation_steps
    if core.max_grad_norm > 0:
        config["gradient_clipping"] = core.max_grad_norm
    config["bf16"] = {"enabled": core.mixed_precision == "bf16"}
    config["fp16"] = {"enabled": core.mixed_precision == "fp16"}
    config.pop("train_batch_size", None)  # derived by DeepSpeed from the two values above and the world size
    # The run hands DeepSpeed its own optimizer (DeepSpeed's CPU Adam with the run's settings where the optimizer
    # states are offloaded); with this flag set, accelerate would swap any optimizer for a CPU Adam that keeps only
    # the learning rate and weight decay.
    config["zero_force_ds_cpu_optimizer"] = False
    return config


def offloads_optimizer(config: dict[str, Any]) -> bool:
    """Whether a DeepSpeed config keeps the optimizer states in CPU memory or on NVMe (the optimizer then steps on
    the CPU)."""
    offload = config.get("zero_optimization", {}).get("offload_optimizer")
    return isinstance(offload, dict) and offload.get("device", "none") in ("cpu", "nvme")


def _read_user_deepspeed_config(value: str, resolve_path: Callable[[str], Path]) -> dict[str, Any]:
    if value.startswith("{"):
        source, text = "deepspeed_config", value
    else:
        path = resolve_path(value)
        if not path.is_file():
            presets = ", ".join(DEEPSPEED_PRESETS)
            raise ConfigError([f"$.deepspeed_config: {value!r} is neither a preset ({presets}) nor an existing "
                               f"JSON file"])
        source, text = str(path), path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"$.deepspeed_config: invalid JSON in {source}: {exc.msg} at line {exc.lineno}"]) from exc
    except RecursionError:
        raise ConfigError([f"$.deepspeed_config: the JSON in {source} is nested too deeply to read"]) from None
    if not isinstance(data, dict) or not isinstance(data.get("zero_optimization", {}), dict):
        raise ConfigError([f"$.deepspeed_config: {source} must be a JSON object with a zero_optimization object"])
    problems = user_deepspeed_problems(data, source)
    if problems:
        raise ConfigError(problems)
    return data


#: Sections of a DeepSpeed config of one's own that are passed on to DeepSpeed: ZeRO, precision, batch and
#: communication settings. The others make DeepSpeed write files or reports of its own (monitors, profilers,
#: autotuning, checkpoint engines), run another optimizer or schedule than the run's, or load checkpoints in formats
#: that can run code; SimpleTuner's options cover what they would do.
DEEPSPEED_SECTIONS = frozenset({
    "zero_optimization", "bf16", "fp16", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
    "train_batch_size", "gradient_clipping", "steps_per_print", "wall_clock_breakdown", "memory_breakdown",
    "communication_data_type", "prescale_gradients", "gradient_predivide_factor", "sparse_gradients",
    "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer", "data_types", "aio",
})
_SECTION_HINTS = {
    "optimizer": "the optimizer comes from the optimizer option",
    "scheduler": "the learning-rate schedule comes from lr_scheduler",
    "checkpoint": "checkpoints are SimpleTuner's (checkpointing_steps, resume_from_checkpoint)",
}


def user_deepspeed_problems(data: dict[str, Any], source: str = "deepspeed_config") -> list[str]:
    """What a DeepSpeed config of one's own asks that is not passed on (see :data:`DEEPSPEED_SECTIONS`)."""
    refused = sorted(set(data) - DEEPSPEED_SECTIONS)
    if not refused:
        return []
    hints = "; ".join(f"{key}: {_SECTION_HINTS[key]}" for key in refused if key in _SECTION_HINTS)
    return [f"$.deepspeed_config: {source} has sections that are not passed on to DeepSpeed: {', '.join(refused)}"
            f"{' (' + hints + ')' if hints else ''}; remove them. Supported: {', '.join(sorted(DEEPSPEED_SECTIONS))}"]


def deepspeed_nvme_paths(core: CoreOptions, resolve_path: Callable[[str], Path] = Path) -> list[tuple[str, str]]:
    """``(label, path)`` of every NVMe offload folder a DeepSpeed config of one's own names (DeepSpeed writes
    swap files there); empty for the presets, whose folder is ``offload_param_path``, and for a config that does not
    read (its problem is reported when the run starts)."""
    value = (core.deepspeed_config or "").strip()
    if not value or value in DEEPSPEED_PRESETS:
        return []
    try:
        data = _read_user_deepspeed_config(value, resolve_path)
    except (ConfigError, OSError, UnicodeDecodeError):
        return []
    found = []
    for section in ("offload_param", "offload_optimizer"):
        offload = data.get("zero_optimization", {}).get(section)
        path = offload.get("nvme_path") if isinstance(offload, dict) else None
        if isinstance(path, str) and path.strip():
            found.append((f"$.deepspeed_config: zero_optimization.{section}.nvme_path", path))
    return found


def fsdp_plugin_kwargs(core: CoreOptions, default_layer_classes: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments of accelerate's ``FullyShardedDataParallelPlugin`` for FSDP2.

    The block classes wrapped are ``fsdp_transformer_layer_cls_to_wrap``, else ``default_layer_classes`` (the
    family's), else None: accelerate then wraps the model's own ``_no_split_modules`` (diffusers lists its
    transformer blocks there)."""
    layers = [c.strip() for c in (core.fsdp_transformer_layer_cls_to_wrap or "").split(",") if c.strip()]
    layers = layers or list(default_layer_classes)
    return {
        "fsdp_version": 2,
        "reshard_after_forward": core.fsdp_reshard_after_forward,
        "state_dict_type": core.fsdp_state_dict_type,
        "cpu_offload": core.fsdp_cpu_offload,
        "activation_checkpointing": core.fsdp_activation_checkpointing,
        "auto_wrap_policy": "transformer_based_wrap",
        "transformer_cls_names_to_wrap": layers or None,
    }


def accelerator_plugins(core: CoreOptions, default_layer_classes: Sequence[str] = (),
                        resolve_path: Callable[[str], Path] = Path) -> dict[str, Any]:
    """``deepspeed_plugin`` / ``fsdp_plugin`` keyword arguments for ``accelerate.Accelerator`` (possibly empty)."""
    if uses_deepspeed(core):
        from accelerate.utils import DeepSpeedPlugin

        return {"deepspeed_plugin": DeepSpeedPlugin(hf_ds_config=deepspeed_config(core, resolve_path))}
    if core.fsdp_enable:
        from accelerate.utils import FullyShardedDataParallelPlugin

        return {"fsdp_plugin": FullyShardedDataParallelPlugin(**fsdp_plugin_kwargs(core, default_layer_classes))}
    return {}


def needs_launcher(core: CoreOptions) -> bool:
    """Whether training must start through ``accelerate launch`` rather than in the current process."""
    return core.num_processes > 1 or core.num_machines > 1 or uses_deepspeed(core) or core.fsdp_enable


def launch_arguments(core: CoreOptions) -> list[str]:
    """The ``accelerate launch`` options (before the training command) for this config."""
    args = ["--num_processes", str(core.num_processes), "--num_machines", str(core.num_machines),
            "--mixed_precision", core.mixed_precision]
    if core.num_processes > 1:
        args.append("--multi_gpu")
    if core.gpu_ids:
        args += ["--gpu_ids", core.gpu_ids]
    if core.num_machines > 1:
        args += ["--machine_rank", str(core.machine_rank), "--main_process_ip", str(core.main_process_ip),
                 "--main_process_port", str(core.main_process_port)]
    else:
        args += ["--main_process_port", str(core.main_process_port)]
    return args


def gpu_set(core: CoreOptions) -> frozenset[str] | None:
    """The GPU ids this environment uses; None means every visible GPU."""
    if not core.gpu_ids:
        return None
    return frozenset(g.strip() for g in core.gpu_ids.split(",") if g.strip())


def distributed_problems(core: CoreOptions, quantized: bool) -> list[str]:
    """Combinations that cannot work, each with the fix."""
    problems = []
    if uses_deepspeed(core) and core.fsdp_enable:
        problems.append("$.deepspeed_config and $.fsdp_enable are both set; DeepSpeed and FSDP2 are alternatives, "
                        "choose one")
    if core.deepspeed_config == "zero3-nvme" and not core.offload_param_path:
        problems.append("$.offload_param_path: required by the zero3-nvme preset (a folder on a fast NVMe disk)")
    stage = DEEPSPEED_PRESETS.get(core.deepspeed_config or "", {}).get("stage")
    if (core.deepspeed_config or "").strip().startswith("{"):  # inline JSON (a file is read when the run starts)
        try:
            stage = _read_user_deepspeed_config(core.deepspeed_config or "", Path).get(
                "zero_optimization", {}).get("stage")
        except ConfigError as exc:
            problems += exc.problems
    if quantized and core.fsdp_enable:
        problems.append("$.base_model_precision: a quantised base model cannot be sharded by FSDP2; use no_change, "
                        "or several processes without fsdp_enable (data parallelism)")
    elif quantized and uses_deepspeed(core):
        problems.append("$.base_model_precision: DeepSpeed casts and moves every parameter of the model it trains, "
                        "which quantised weights do not allow; use no_change, or several processes without "
                        "deepspeed_config (data parallelism)")
    if core.grad_clip_method == "value" and core.max_grad_norm > 0 and (uses_deepspeed(core) or core.fsdp_enable):
        problems.append("$.grad_clip_method: DeepSpeed and FSDP2 clip the gradients' total norm only; set "
                        "grad_clip_method: norm (max_grad_norm is then the norm) or train without sharding")
    shards_weights = stage == 3 or core.fsdp_enable
    if shards_weights and core.model_type != "full":
        problems.append("$.model_type: ZeRO-3 and FSDP2 shard the weights for full-rank training (model_type: full); "
                        "an adapter is small enough for data parallelism or ZeRO stage 1/2")
    if shards_weights and core.validation_prompt is not None and core.validation_method == "pipeline":
        problems.append("$.validation_prompt: pipeline validation renders on the main process alone, which cannot "
                        "run a model sharded by ZeRO-3 or FSDP2; validate checkpoints elsewhere (validation_method "
                        "external-script), unset validation_prompt, or use ZeRO stage 1/2")
    if shards_weights and core.use_ema:
        problems.append("$.use_ema: the moving average of weights sharded by ZeRO-3 or FSDP2 is not supported; "
                        "turn use_ema off or use ZeRO stage 1/2")
    if core.num_machines > 1:
        if not core.main_process_ip:
            problems.append("$.main_process_ip: required when num_machines > 1 (the main machine's address)")
        if core.machine_rank >= core.num_machines:
            problems.append(f"$.machine_rank: must be below num_machines ({core.num_machines}), "
                            f"got {core.machine_rank}")
        if core.num_processes < core.num_machines:
            problems.append("$.num_processes: counts processes on all machines together and must be at least "
                            "num_machines")
    ids = gpu_set(core)
    if ids is not None:
        if not all(g.isdigit() for g in ids):
            problems.append(f"$.gpu_ids: expected comma-separated GPU numbers such as '0,1', got {core.gpu_ids!r}")
        elif core.num_machines == 1 and len(ids) < core.num_processes:
            problems.append(f"$.gpu_ids: {len(ids)} GPU(s) listed for {core.num_processes} processes; list one GPU "
                            "per process or lower num_processes")
    return problems
