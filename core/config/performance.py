"""Config checks of the speed and memory options (compilation, attention, offloading, FP8 training): combinations
that cannot work are problems, settings that do nothing are warnings. Checks that need the machine (a GPU, an
installed package, torch's compiler backends) run when the training run starts
(:mod:`simpletuner.core.training.machine_checks`).
"""

from __future__ import annotations

from typing import Any

from simpletuner.core.distributed import uses_deepspeed
from simpletuner.core.training.offload import offloads_trained_model

_SAGE_TRAINING = ("training", "training+inference")
#: dynamo_mode values that record CUDA graphs.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def performance_problems(core: Any) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the speed and memory options of ``core`` (a CoreOptions)."""
    problems: list[str] = []
    warnings: list[str] = []
    compiling = core.dynamo_backend.strip().lower() not in ("no", "none", "")
    if not compiling:
        changed = [k for k in ("dynamo_mode", "dynamo_fullgraph", "dynamo_dynamic", "dynamo_use_regional_compilation")
                   if getattr(core, k) not in (None, False)]
        if changed:
            warnings.append(f"{', '.join(changed)}: no effect while dynamo_backend is 'no'; set dynamo_backend "
                            "(e.g. inductor) to compile")

    if core.attention_mechanism.startswith("sageattention") and core.sageattention_usage in _SAGE_TRAINING:
        problems.append(f"$.sageattention_usage: {core.sageattention_usage!r} asks to train through SageAttention, "
                        "whose kernels have no backward pass (the attention projections would get no gradient); "
                        "set inference (validation uses SageAttention, training PyTorch SDPA)")

    if core.gradient_checkpointing_interval not in (None, 1) and not core.gradient_checkpointing:
        problems.append("$.gradient_checkpointing_interval: only acts with gradient_checkpointing; set "
                        "gradient_checkpointing: true or remove the interval")

    problems += _offload_problems(core, warnings, compiling)

    if core.fp8_training:
        if core.base_model_precision != "no_change":
            problems.append(f"$.fp8_training: float8 training computes with the base weights in bf16 and cannot "
                            f"run on a base model quantised to {core.base_model_precision}; set "
                            "base_model_precision: no_change or turn fp8_training off")
        if core.mixed_precision != "bf16":
            problems.append("$.fp8_training: float8 training keeps everything around its matmuls in bf16; set "
                            "mixed_precision: bf16")
        if uses_deepspeed(core):
            problems.append("$.fp8_training: torchao's float8 layers are not supported under DeepSpeed; use FSDP2 "
                            "(fsdp_enable) or a single GPU")
        if compiling:
            warnings.append("fp8_training with dynamo_backend: a known failure — on an H200 with torch 2.11, the "
                            "first backward pass of compiled float8 Flux blocks stopped with an illegal memory "
                            "access in a compiled kernel. If the run's first step fails that way, train float8 "
                            "eagerly (dynamo_backend: no) or compile without fp8_training")
    return problems, warnings


def _offload_problems(core: Any, warnings: list[str], compiling: bool) -> list[str]:
    problems: list[str] = []
    if not core.enable_group_offload:
        tuned = [k for k in ("group_offload_use_stream", "group_offload_to_disk_path") if getattr(core, k)]
        if core.group_offload_type != "block_level":
            tuned.append("group_offload_type")
        if core.group_offload_blocks_per_group != 1:
            tuned.append("group_offload_blocks_per_group")
        if tuned:
            warnings.append(f"{', '.join(tuned)}: no effect without enable_group_offload: true")
        return problems
    if uses_deepspeed(core):
        problems.append("$.enable_group_offload: cannot be combined with deepspeed_config: DeepSpeed places the "
                        "weights itself (the zero2-offload and zero3-offload presets offload to the CPU); choose one")
    if core.fsdp_enable:
        problems.append("$.enable_group_offload: cannot be combined with fsdp_enable: FSDP2 places the sharded "
                        "weights itself (fsdp_cpu_offload offloads them to the CPU); choose one")
    if core.group_offload_use_stream and core.group_offload_to_disk_path:
        problems.append("$.group_offload_use_stream: streamed transfers need the weights pinned in CPU memory and "
                        "cannot read them from group_offload_to_disk_path; use one of the two")
    for key in ("text_encoder_1_precision", "text_encoder_2_precision"):
        if getattr(core, key) != "no_change":
            problems.append(f"$.{key}: a quantised text encoder cannot also be group-offloaded (quantisation "
                            "replaces the layers the offloading hooks sit on); keep its precision or turn "
                            "enable_group_offload off")
    if core.group_offload_to_disk_path and core.base_model_precision != "no_change":
        problems.append(f"$.group_offload_to_disk_path: the weights of a base model quantised to "
                        f"{core.base_model_precision} cannot be written to safetensors files; offload to CPU memory "
                        "(remove group_offload_to_disk_path) or keep the base model's precision")
    if core.model_type == "full" or core.lora_type == "lycoris":
        what = "a full-rank run trains every weight" if core.model_type == "full" else (
            "LyCORIS modules read their base layer's weights outside its forward pass")
        warnings.append(f"enable_group_offload: {what}, so the trained model stays on the GPU and only the text "
                        "encoders and VAE are offloaded")
    if offloads_trained_model(core) and compiling:
        if core.dynamo_fullgraph:
            problems.append("$.dynamo_fullgraph: the group offloading hooks of enable_group_offload move weights in "
                            "code torch.compile does not trace, so the trained model cannot compile to one graph; "
                            "set dynamo_fullgraph: false (compiled regions end at each transfer) or turn "
                            "enable_group_offload off")
        if core.dynamo_mode in CUDA_GRAPH_MODES:
            problems.append(f"$.dynamo_mode: {core.dynamo_mode!r} records CUDA graphs, which replay fixed memory "
                            "addresses, and enable_group_offload moves the trained model's weights every step; use "
                            "dynamo_mode: default or max-autotune-no-cudagraphs, or turn enable_group_offload off")
    if core.group_offload_type == "leaf_level" and core.group_offload_blocks_per_group != 1:
        warnings.append("group_offload_blocks_per_group: no effect with group_offload_type leaf_level")
    if core.group_offload_use_stream and core.group_offload_blocks_per_group != 1:
        warnings.append("group_offload_blocks_per_group: streamed offloading moves one block at a time; the value "
                        "is taken as 1")
    if core.model_type == "lora" and not core.gradient_checkpointing:
        warnings.append("enable_group_offload: without gradient_checkpointing the backward pass keeps every "
                        "block's weights on the GPU until it reaches them, so the transformer saves little memory; "
                        "set gradient_checkpointing: true")
    return problems
