"""DeepSpeed, FSDP2 and multi-node settings: generated configs accepted by the libraries' own parsers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simpletuner.core.config import CoreOptions
from simpletuner.core.distributed import (
    DEEPSPEED_PRESETS,
    accelerator_plugins,
    deepspeed_config,
    deepspeed_nvme_paths,
    distributed_problems,
    fsdp_plugin_kwargs,
    launch_arguments,
    needs_launcher,
)
from simpletuner.core.errors import ConfigError

EXPECTED_OFFLOAD = {
    "zero1": (1, None, None),
    "zero2": (2, None, None),
    "zero2-offload": (2, "cpu", None),
    "zero3": (3, None, None),
    "zero3-offload": (3, "cpu", "cpu"),
    "zero3-nvme": (3, "nvme", "nvme"),
}


@pytest.mark.parametrize("preset", sorted(DEEPSPEED_PRESETS))
def test_each_preset_is_accepted_by_deepspeeds_own_parser(preset: str, tmp_path: Path) -> None:
    from deepspeed.runtime import config as deepspeed_runtime_config

    core = CoreOptions(deepspeed_config=preset, train_batch_size=2, gradient_accumulation_steps=4,
                       offload_param_path=str(tmp_path), mixed_precision="bf16")
    parsed = deepspeed_runtime_config.DeepSpeedConfig(deepspeed_config(core))
    stage, optimizer_device, param_device = EXPECTED_OFFLOAD[preset]
    zero = parsed.zero_config
    assert int(zero.stage) == stage
    assert (str(zero.offload_optimizer.device) if zero.offload_optimizer else None) == optimizer_device
    assert (str(zero.offload_param.device) if zero.offload_param else None) == param_device
    assert parsed.train_micro_batch_size_per_gpu == 2 and parsed.gradient_accumulation_steps == 4
    assert parsed.bfloat16_config.enabled and not parsed.float16_config.enabled
    assert parsed.gradient_clipping == 2.0


def test_a_user_json_file_keeps_its_settings_but_takes_the_batch_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2, "allgather_bucket_size": 1e8},
                                "train_batch_size": 999, "train_micro_batch_size_per_gpu": 7}))
    config = deepspeed_config(CoreOptions(deepspeed_config=str(path), train_batch_size=3))
    assert config["zero_optimization"] == {"stage": 2, "allgather_bucket_size": 1e8}
    assert config["train_micro_batch_size_per_gpu"] == 3 and "train_batch_size" not in config


@pytest.mark.parametrize(("value", "message"), [
    ("zero4", "is neither a preset"),
    ('{"zero_optimization": 3}', "must be a JSON object with a zero_optimization object"),
    ("{broken", "invalid JSON in deepspeed_config"),
    ('{"a": ' * 50000 + "1" + "}" * 50000, "the JSON in deepspeed_config is nested too deeply to read"),
])
def test_bad_deepspeed_values_are_config_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        deepspeed_config(CoreOptions(deepspeed_config=value))


def test_fsdp2_plugin_is_built_by_accelerate() -> None:
    core = CoreOptions(fsdp_enable=True, fsdp_state_dict_type="FULL_STATE_DICT", fsdp_cpu_offload=True,
                       fsdp_activation_checkpointing=True, fsdp_reshard_after_forward=False)
    assert fsdp_plugin_kwargs(core, ["FluxTransformerBlock"])["transformer_cls_names_to_wrap"] == [
        "FluxTransformerBlock"]
    plugin = accelerator_plugins(core, ["FluxTransformerBlock", "FluxSingleTransformerBlock"])["fsdp_plugin"]
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is False
    assert plugin.activation_checkpointing is True
    assert plugin.transformer_cls_names_to_wrap == ["FluxTransformerBlock", "FluxSingleTransformerBlock"]
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    override = CoreOptions(fsdp_enable=True, fsdp_transformer_layer_cls_to_wrap="A, B")
    assert fsdp_plugin_kwargs(override, ["C"])["transformer_cls_names_to_wrap"] == ["A", "B"]


def test_launch_arguments_for_multi_node() -> None:
    core = CoreOptions(num_processes=16, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1",
                       main_process_port=29501, gpu_ids="0,1,2,3,4,5,6,7")
    assert launch_arguments(core) == [
        "--num_processes", "16", "--num_machines", "2", "--mixed_precision", "bf16", "--multi_gpu",
        "--gpu_ids", "0,1,2,3,4,5,6,7", "--machine_rank", "1", "--main_process_ip", "10.0.0.1",
        "--main_process_port", "29501",
    ]
    assert needs_launcher(core) and not needs_launcher(CoreOptions())


@pytest.mark.parametrize(("changes", "problem"), [
    ({"deepspeed_config": "zero2", "fsdp_enable": True, "model_type": "full"}, "DeepSpeed and FSDP2 are alternatives"),
    ({"deepspeed_config": "zero3-nvme", "model_type": "full"}, "$.offload_param_path: required by the zero3-nvme"),
    ({"fsdp_enable": True}, "$.model_type: ZeRO-3 and FSDP2 shard the weights for full-rank training"),
    ({"deepspeed_config": "zero3", "model_type": "full", "use_ema": True}, "$.use_ema: the moving average"),
    ({"fsdp_enable": True, "model_type": "full", "validation_prompt": "a cat"}, "$.validation_prompt: pipeline"),
    ({"num_machines": 2, "num_processes": 2}, "$.main_process_ip: required when num_machines > 1"),
    ({"num_machines": 2, "num_processes": 2, "machine_rank": 2, "main_process_ip": "h"},
     "$.machine_rank: must be below num_machines (2), got 2"),
    ({"gpu_ids": "1", "num_processes": 2}, "$.gpu_ids: 1 GPU(s) listed for 2 processes"),
    ({"gpu_ids": "cuda:1"}, "$.gpu_ids: expected comma-separated GPU numbers"),
])
def test_impossible_combinations_are_explained(changes: dict, problem: str) -> None:
    problems = distributed_problems(CoreOptions(**changes), quantized=False)
    assert len(problems) == 1 and problem in problems[0]


def test_quantised_models_train_without_deepspeed_or_fsdp2() -> None:
    """DeepSpeed casts and moves every parameter (quantised weights refuse both), FSDP2 shards them."""
    assert "cannot be sharded by FSDP2" in distributed_problems(CoreOptions(fsdp_enable=True, model_type="full"),
                                                                quantized=True)[0]
    assert "DeepSpeed casts and moves every parameter" in distributed_problems(
        CoreOptions(deepspeed_config="zero2"), quantized=True)[0]
    assert distributed_problems(CoreOptions(num_processes=2), quantized=True) == []


@pytest.mark.parametrize(("section", "hint"), [
    ("optimizer", "the optimizer comes from the optimizer option"),
    ("scheduler", "the learning-rate schedule comes from lr_scheduler"),
    ("checkpoint", "checkpoints are SimpleTuner's"),
    ("tensorboard", None), ("flops_profiler", None), ("autotuning", None), ("nebula", None),
])
def test_deepspeed_sections_that_act_on_their_own_are_refused(section: str, hint: str | None,
                                                              tmp_path: Path) -> None:
    """Monitors, profilers, autotuning and checkpoint engines write files of their own or load formats that run
    code; an optimizer or schedule would replace the run's. They are named, with the supported sections."""
    data = {"zero_optimization": {"stage": 2}, "wall_clock_breakdown": False, section: {"enabled": True}}
    inline = CoreOptions(deepspeed_config=json.dumps(data))
    problems = distributed_problems(inline, quantized=False)
    assert len(problems) == 1 and f"not passed on to DeepSpeed: {section}" in problems[0], problems
    assert "Supported: aio, bf16" in problems[0] and (hint is None or hint in problems[0])
    file = tmp_path / "ds.json"
    file.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=f"{file} has sections that are not passed on to DeepSpeed: {section}"):
        deepspeed_config(CoreOptions(deepspeed_config=str(file)))


def test_an_inline_stage_3_config_gets_the_stage_3_checks() -> None:
    core = CoreOptions(deepspeed_config='{"zero_optimization": {"stage": 3}}', use_ema=True, model_type="full")
    problems = distributed_problems(core, quantized=True)
    assert [p.split(":")[0] for p in problems] == ["$.base_model_precision", "$.use_ema"]


def test_nvme_folders_of_a_users_deepspeed_config_are_listed(tmp_path: Path) -> None:
    data = {"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/etc"},
                                  "offload_optimizer": {"device": "nvme", "nvme_path": "swap"}}}
    file = tmp_path / "ds.json"
    file.write_text(json.dumps(data))
    expected = [("$.deepspeed_config: zero_optimization.offload_param.nvme_path", "/etc"),
                ("$.deepspeed_config: zero_optimization.offload_optimizer.nvme_path", "swap")]
    assert deepspeed_nvme_paths(CoreOptions(deepspeed_config=json.dumps(data))) == expected
    assert deepspeed_nvme_paths(CoreOptions(deepspeed_config=str(file))) == expected
    assert deepspeed_nvme_paths(CoreOptions(deepspeed_config="zero3-nvme", offload_param_path="/nvme")) == []
    assert deepspeed_nvme_paths(CoreOptions(deepspeed_config="{broken")) == []
