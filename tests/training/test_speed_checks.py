"""Config checks of the speed and memory options: every combination that cannot work is a problem naming the key
and the way out, settings that do nothing are warnings — from `simpletuner config check` as a user runs it, and
for each combination through the checker itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simpletuner.core.config import Layer, build_schema
from simpletuner.core.config.checks import check_config
from simpletuner.core.config.core_options import ATTENTION_BACKENDS
from simpletuner.core.plugins import Registry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def check(registry: Registry, **settings: Any) -> tuple[list[str], list[str]]:
    config, _ = build_schema(registry).load(
        [Layer("env:t", {"model_family": "flux", "max_train_steps": 10, **settings})], own_source="env:t")
    return check_config(config, registry)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"attention_mechanism": "sageattention", "sageattention_usage": "training"},
     "$.sageattention_usage: 'training' asks to train through SageAttention"),
    ({"gradient_checkpointing_interval": 2}, "$.gradient_checkpointing_interval: only acts with gradient_"),
    ({"fp8_training": True, "base_model_precision": "int8-quanto"}, "cannot run on a base model quantised"),
    ({"fp8_training": True, "mixed_precision": "fp16"}, "set mixed_precision: bf16"),
    ({"fp8_training": True, "deepspeed_config": "zero2"}, "not supported under DeepSpeed"),
    ({"enable_group_offload": True, "deepspeed_config": "zero2"}, "cannot be combined with deepspeed_config"),
    ({"enable_group_offload": True, "fsdp_enable": True}, "cannot be combined with fsdp_enable"),
    ({"enable_group_offload": True, "group_offload_use_stream": True, "group_offload_to_disk_path": "offload"},
     "streamed transfers need the weights pinned in CPU memory"),
    ({"enable_group_offload": True, "group_offload_to_disk_path": "offload", "base_model_precision": "int8-torchao"},
     "cannot be written to safetensors files"),
    ({"enable_group_offload": True, "text_encoder_1_precision": "int8-quanto"},
     "$.text_encoder_1_precision: a quantised text encoder cannot also be group-offloaded"),
    ({"enable_group_offload": True, "dynamo_backend": "inductor", "dynamo_fullgraph": True},
     "$.dynamo_fullgraph: the group offloading hooks of enable_group_offload move weights"),
    ({"enable_group_offload": True, "dynamo_backend": "inductor", "dynamo_mode": "reduce-overhead"},
     "$.dynamo_mode: 'reduce-overhead' records CUDA graphs, which replay fixed memory addresses, and "
     "enable_group_offload"),
    ({"enable_group_offload": True, "dynamo_backend": "inductor", "dynamo_mode": "max-autotune"},
     "use dynamo_mode: default or max-autotune-no-cudagraphs, or turn enable_group_offload off"),
])
def test_impossible_combinations_are_problems(registry: Registry, settings: dict[str, Any], expected: str) -> None:
    problems, _ = check(registry, **settings)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(("settings", "expected"), [
    ({"dynamo_mode": "max-autotune"}, "dynamo_mode: no effect while dynamo_backend is 'no'"),
    ({"group_offload_use_stream": True}, "group_offload_use_stream: no effect without enable_group_offload"),
    ({"enable_group_offload": True}, "without gradient_checkpointing the backward pass keeps"),
    ({"enable_group_offload": True, "gradient_checkpointing": True, "lora_type": "lycoris"},
     "only the text encoders and VAE are offloaded"),
    ({"enable_group_offload": True, "gradient_checkpointing": True, "group_offload_type": "leaf_level",
      "group_offload_blocks_per_group": 3}, "group_offload_blocks_per_group: no effect with group_offload_type"),
])
def test_settings_without_effect_are_warnings(registry: Registry, settings: dict[str, Any], expected: str) -> None:
    problems, warnings = check(registry, **settings)
    assert problems == [] and any(expected in w for w in warnings), (problems, warnings)


def test_float8_with_compilation_warns_of_its_known_failure(registry: Registry) -> None:
    problems, warnings = check(registry, fp8_training=True, mixed_precision="bf16", dynamo_backend="inductor",
                               dynamo_use_regional_compilation=True)
    assert problems == [] and len(warnings) == 1 and warnings[0].startswith("fp8_training with dynamo_backend: ")
    assert "train float8 eagerly (dynamo_backend: no)" in warnings[0]
    assert check(registry, fp8_training=True, mixed_precision="bf16") == ([], [])


@pytest.mark.parametrize("family", ["sana", "pixart", "sd3", "sdxl"])
def test_attention_kernels_are_refused_where_the_family_cannot_switch_them(registry: Registry, family: str) -> None:
    problems, _ = check(registry, model_family=family, attention_mechanism="xformers")
    assert any(p.startswith("$.attention_mechanism: ") and "dispatcher" in p for p in problems), problems
    assert check(registry, model_family="z_image", attention_mechanism="xformers")[0] == []


def test_sensible_speed_settings_pass(registry: Registry) -> None:
    problems, warnings = check(registry, dynamo_backend="inductor", dynamo_use_regional_compilation=True,
                               attention_mechanism="sageattention", gradient_checkpointing=True,
                               gradient_checkpointing_interval=2, enable_group_offload=True,
                               group_offload_use_stream=True, base_model_precision="int8-torchao")
    assert problems == [] and warnings == []


@pytest.mark.parametrize("settings", [
    {"dynamo_mode": "max-autotune-no-cudagraphs"},
    {"dynamo_fullgraph": False, "dynamo_mode": "default"},
    {"dynamo_fullgraph": True, "dynamo_mode": "reduce-overhead", "model_type": "full"},
    {"dynamo_fullgraph": True, "dynamo_mode": "reduce-overhead", "lora_type": "lycoris"},
])
def test_compilation_with_offloading_passes_where_it_works(registry: Registry, settings: dict[str, Any]) -> None:
    """Compiled regions split around the offloading hooks (tested in test_speedups), and a full-rank or LyCORIS run
    keeps its trained model on the GPU (only the encoders are offloaded, and they are not compiled)."""
    problems, _ = check(registry, enable_group_offload=True, gradient_checkpointing=True, dynamo_backend="inductor",
                        **settings)
    assert problems == [], problems


def test_group_offloading_hooks_break_a_full_graph() -> None:
    """The reason dynamo_fullgraph is refused with offloading: diffusers' hooks are compiler-disabled."""
    import torch
    from diffusers.hooks import apply_group_offloading

    torch._dynamo.reset()  # what an earlier compiled run in this process learnt of the hooks would hide the break
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16))
    apply_group_offloading(model, onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
                           offload_type="leaf_level")
    model.compile(backend="eager", fullgraph=True)
    with pytest.raises(torch._dynamo.exc.Unsupported, match="disable"):
        model(torch.randn(2, 16))
    torch._dynamo.reset()


@pytest.mark.parametrize(("settings", "expected"), [
    ({"dynamo_backend": "inductor", "dynamo_mode": "reduce-overhead"},
     "dynamo_mode 'reduce-overhead' records CUDA graphs and this machine has no CUDA GPU; use dynamo_mode: default "
     "or max-autotune-no-cudagraphs"),
    ({"dynamo_backend": "aot_eager", "dynamo_mode": "max-autotune"}, "dynamo_mode 'max-autotune' records CUDA"),
    ({"dynamo_backend": "inductor"}, "dynamo_backend 'inductor' compiles C++ code on the CPU and finds no C++ "
                                     "compiler here"),
])
def test_what_this_cpu_cannot_compile_is_refused(monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any],
                                                 expected: str) -> None:
    import torch
    from torch._inductor import cpp_builder, exc

    from simpletuner.core.config.core_options import CoreOptions
    from simpletuner.core.training.machine_checks import machine_problems

    core = CoreOptions(**settings)
    if "dynamo_mode" not in settings:
        assert machine_problems(core, torch.device("cpu")) == [], "this machine has a C++ compiler"

    def no_compiler() -> str:
        raise exc.InvalidCxxCompiler

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    assert [p for p in machine_problems(core, torch.device("cpu")) if expected in p], \
        machine_problems(core, torch.device("cpu"))
    assert machine_problems(CoreOptions(dynamo_backend="aot_eager"), torch.device("cpu")) == []


@pytest.mark.parametrize(("settings", "expected"), [
    ({"attention_mechanism": "flash-attention"}, "attention_mechanism"),
    ({"dynamo_mode": "fastest"}, "dynamo_mode"),
    ({"group_offload_blocks_per_group": 0}, "group_offload_blocks_per_group"),
    ({"base_model_precision": "int4-torchao"}, "base_model_precision"),
])
def test_unknown_values_are_refused(registry: Registry, settings: dict[str, Any], expected: str) -> None:
    try:
        problems, _ = check(registry, **settings)
    except Exception as exc:  # the schema refuses values outside an option's choices or bounds
        assert expected in str(exc)
        return
    assert any(expected in p for p in problems), problems


def test_config_check_cli_names_the_problem(tmp_path: Path) -> None:
    env = tmp_path / "configs" / "fast"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({
        "model_family": "flux", "max_train_steps": 10, "fp8_training": True, "mixed_precision": "fp16"}))
    (env / "multidatabackend.json").write_text("[]")
    done = subprocess.run([sys.executable, "-m", "simpletuner.core.cli.main", "--workspace", str(tmp_path),
                           "config", "check", "--env", "fast"], capture_output=True, text=True, timeout=100)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "$.fp8_training" in output and "mixed_precision: bf16" in output


#: The install hint of every attention_mechanism value that needs a package.
_HINTS = {"flash-attn": "pip install flash-attn", "flash-attn-2": "pip install flash-attn",
          "flash-attn-varlen": "pip install flash-attn", "flash-attn-3": "build FlashAttention 3 (hopper/",
          "flash-attn-3-varlen": "build FlashAttention 3 (hopper/", "xformers": "pip install xformers",
          **{m: "pip install sageattention" for m in ATTENTION_BACKENDS if m.startswith("sageattention")}}


def test_every_kernel_package_has_its_hint() -> None:
    packaged = {m for m, b in ATTENTION_BACKENDS.items() if not b.startswith(("native", "_native", "flex"))}
    assert packaged == set(_HINTS)


@pytest.mark.parametrize("mechanism", sorted(_HINTS))
def test_a_missing_kernel_package_is_named_with_its_install_hint(monkeypatch: pytest.MonkeyPatch,
                                                                 mechanism: str) -> None:
    from diffusers.models import attention_dispatch

    from simpletuner.core.config.core_options import CoreOptions
    from simpletuner.core.training.machine_checks import machine_problems

    def absent(backend: Any) -> None:
        raise RuntimeError(f"Backend '{backend.value}' is not usable: the package is not installed.\nmore")

    monkeypatch.setattr(attention_dispatch, "_check_attention_backend_requirements", absent)
    core = CoreOptions(attention_mechanism=mechanism)
    (problem,) = machine_problems(core, "cuda")
    assert problem.startswith(f"attention_mechanism {mechanism!r} is not usable here (Backend '"), problem
    assert problem.split("); ", 1)[1].startswith(_HINTS[mechanism]), problem
