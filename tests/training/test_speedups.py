"""The speed and memory options on the tiny Flux (CPU): each trains the same LoRA as a plain run — the same losses
where the option must not change the arithmetic (offloading, checkpointing every other block, the math attention
kernel), a falling loss where it may (compilation) — and saves a LoRA that loads; what cannot run here is refused
with its reason before training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import events_of

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.training import stages

pytestmark = pytest.mark.timeout(300)

#: A short run whose loss already falls on the tiny Flux (see test_quantized_run for the long version).
SHORT = {"images": 2, "train_batch_size": 1, "max_train_steps": 8, "learning_rate": 1e-2, "lora_rank": 8,
         "max_grad_norm": 1.0, "gradient_checkpointing": True}


def losses(result: Any) -> list[float]:
    return [e["loss"] for e in events_of(result.run_dir, "step")]


def lora_tensors(result: Any) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(result.output))


@pytest.fixture
def plain(make_env: Callable[..., str], run_env: Callable[..., Any]) -> Any:
    """The reference run without any speed option."""
    return run_env(make_env("plain", **SHORT))


def assert_same_training(result: Any, reference: Any) -> None:
    assert losses(result) == pytest.approx(losses(reference), rel=1e-5, abs=1e-6)
    mine, theirs = lora_tensors(result), lora_tensors(reference)
    assert mine.keys() == theirs.keys()
    for key in mine:
        # Adam normalises each update, so elements whose gradients are ~0 may move by rounding noise: compare
        # whole tensors
        difference = float((mine[key] - theirs[key]).norm())
        assert difference <= 1e-3 * float(theirs[key].norm()) + 1e-6, (key, difference)


@pytest.mark.parametrize("checkpointing", [True, False])
def test_group_offloading_to_disk_trains_the_same_lora(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                      plain: Any, workspace: Any, checkpointing: bool) -> None:
    """Offloading the frozen weights to files changes where they live, not the arithmetic: a LoRA whose updates
    were lost (offloading that reloads trained weights from disk) would repeat the first loss, and a backward pass
    that read a swapped-out weight (an empty tensor once offloaded to disk) would diverge or give NaN — both with
    checkpointed blocks (recomputed in the backward pass) and without."""
    from simpletuner.core.training import offload as offload_module

    applied: list[dict[str, Any]] = []
    original = offload_module.offload_options

    def spy(core: Any, device: Any, folder: Path | None, *, trained: bool) -> dict[str, Any]:
        options = original(core, device, folder, trained=trained)
        applied.append({"trained": trained, **options})
        return options

    offload_module.offload_options = spy
    try:
        result = run_env(make_env("offload", enable_group_offload=True, group_offload_type="block_level",
                                  group_offload_to_disk_path="scratch/offload",
                                  **{**SHORT, "gradient_checkpointing": checkpointing}))
    finally:
        offload_module.offload_options = original
    assert_same_training(result, plain)
    assert events_of(result.run_dir, "speedups")[0]["offloaded"] == "transformer"
    trained = [a for a in applied if a["trained"]]
    frozen = [a for a in applied if not a["trained"]]
    assert len(trained) == 1 and trained[0]["offload_type"] == "leaf_level"
    assert frozen and all(a["offload_type"] == "block_level" for a in frozen)  # the encoders as asked
    assert all(a["offload_to_disk_path"] for a in applied)
    scratch = workspace.root / "scratch" / "offload"
    assert scratch.is_dir() and not any(scratch.iterdir()), "the run's offload files are removed when it ends"


def test_checkpointing_every_other_block_trains_the_same_lora(make_env: Callable[..., str],
                                                             run_env: Callable[..., Any], plain: Any) -> None:
    from simpletuner.core.training import checkpointing

    made: list[checkpointing.BlockCheckpoint] = []
    original = checkpointing.BlockCheckpoint

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self, interval: int = 1, *, offloaded: bool = False) -> None:
            super().__init__(interval, offloaded=offloaded)
            made.append(self)

    checkpointing.BlockCheckpoint = Recording  # type: ignore[misc]
    try:
        result = run_env(make_env("interval", gradient_checkpointing_interval=2, **SHORT))
    finally:
        checkpointing.BlockCheckpoint = original  # type: ignore[misc]
    assert_same_training(result, plain)
    (function,) = made
    blocks_per_pass = function.calls  # the tiny Flux's double and single blocks
    assert blocks_per_pass >= 2
    steps = len(losses(result))
    assert function.checkpointed == steps * ((blocks_per_pass + 1) // 2)
    assert events_of(result.run_dir, "speedups")[0]["checkpoint_interval"] == 2


def test_math_attention_backend_trains_the_same_lora(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                     plain: Any, tiny_flux: Path) -> None:
    """The attention kernels a CPU trains with: PyTorch SDPA (diffusers, the plain run) and its math kernel."""
    result = run_env(make_env("math", attention_mechanism="native-math", **SHORT))
    assert_same_training(result, plain)
    assert sum(losses(result)[-3:]) < sum(losses(result)[:3]), losses(result)
    assert_loads_into_stock_pipeline(result, tiny_flux)
    assert events_of(result.run_dir, "speedups")[0]["attention"] == "native-math"


def test_regional_compilation_trains_and_saves_the_eager_layout(make_env: Callable[..., str],
                                                                run_env: Callable[..., Any], plain: Any,
                                                                workspace: Any, tiny_flux: Path) -> None:
    """Inductor compiles each repeated block class once; the saved LoRA and checkpoints have the eager run's keys
    (no _orig_mod prefixes): an eager run resumes the compiled run's checkpoint and continues where it was, and the
    loss falls as the eager run's does. Validation runs with the compiled code set aside."""
    name = make_env("compiled", dynamo_backend="inductor", dynamo_use_regional_compilation=True,
                    validation_prompt="a red square", validation_steps=0, validation_resolution="64",
                    validation_num_inference_steps=2, checkpointing_steps=4, **SHORT)
    result = run_env(name)
    compiled = events_of(result.run_dir, "speedups")[0]["compiled"]
    assert compiled["regional"] and compiled["modules"] >= 2 and compiled["backend"] == "inductor"
    assert lora_tensors(result).keys() == lora_tensors(plain).keys()
    assert_loads_into_stock_pipeline(result, tiny_flux)
    eager_losses, compiled_losses = losses(plain), losses(result)
    assert compiled_losses[0] == pytest.approx(eager_losses[0], rel=1e-3)  # the same first forward
    assert sum(compiled_losses[-3:]) < sum(compiled_losses[:3])
    assert events_of(result.run_dir, "validation"), "validation ran"

    config_path = workspace.configs_dir / name / "config.json"
    config = json.loads(config_path.read_text())
    config.update(dynamo_backend="no", dynamo_use_regional_compilation=False, validation_prompt=None,
                  resume_from_checkpoint=str(result.run_dir / "checkpoint-4"))
    config_path.write_text(json.dumps(config))
    resumed = run_env(name)
    assert events_of(resumed.run_dir, "run_started")[0]["start_step"] == 4
    assert losses(resumed) == pytest.approx(compiled_losses[4:], rel=1e-3)


@pytest.mark.timeout(120)
def test_regional_compilation_compiles_each_block_class_once() -> None:
    """The compiled graphs of regional compilation do not grow with the model's depth: every block of a class
    runs the class's graphs (one for blocks whose inputs need no gradient, as the first block's in a LoRA run, one
    for the others), and the second step compiles nothing."""
    import torch
    import torch._dynamo.utils
    from diffusers import FluxTransformer2DModel

    from simpletuner.core.config.core_options import CoreOptions
    from simpletuner.core.training.compile import compile_model
    from simpletuner.model_families.flux.family import FluxFamily
    from simpletuner.model_families.flux.tiny import TINY_SIZES

    core = CoreOptions(dynamo_backend="aot_eager", dynamo_use_regional_compilation=True)
    graphs = []
    for double, single in ((2, 3), (4, 5)):
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = FluxTransformer2DModel(**{**TINY_SIZES["transformer"], "num_layers": double,
                                          "num_single_layers": single})
        model.requires_grad_(False)
        model.transformer_blocks[0].attn.to_q.requires_grad_(True)  # as a LoRA: only some weights train
        assert len(compile_model(model, FluxFamily, core)) == double + single
        per_step = []
        torch._dynamo.utils.counters.clear()
        for _ in range(2):
            out = model(hidden_states=torch.randn(1, 64, 64), encoder_hidden_states=torch.randn(1, 16, 32),
                        pooled_projections=torch.randn(1, 32), timestep=torch.tensor([0.5]),
                        guidance=torch.tensor([1.0]), img_ids=torch.zeros(64, 3), txt_ids=torch.zeros(16, 3)).sample
            out.square().mean().backward()
            per_step.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        assert per_step[0] == per_step[1], "the second step compiled again"
        graphs.append(per_step[0])
    torch._dynamo.reset()
    assert graphs[0] == graphs[1] <= 2 * len(FluxFamily.block_classes) < 2 + 3, graphs


def test_compilation_with_group_offloading_trains_the_same_lora(make_env: Callable[..., str],
                                                               run_env: Callable[..., Any], plain: Any) -> None:
    """Compiled blocks whose layers are offloaded: the compiled regions end at the offloading hooks (the config
    check refuses dynamo_fullgraph with them), and aot_eager's arithmetic is eager's, so the same training."""
    result = run_env(make_env("compiled-offload", dynamo_backend="aot_eager", dynamo_use_regional_compilation=True,
                              enable_group_offload=True, **SHORT))
    speedups = events_of(result.run_dir, "speedups")[0]
    assert speedups["offloaded"] == "transformer" and speedups["compiled"]["regional"]
    assert_same_training(result, plain)


def test_the_offload_memory_preset_trains_the_same_lora(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                        plain: Any) -> None:
    from simpletuner.core.plugins import Registry

    preset = Registry().model_family("flux").memory_preset("offload")
    assert preset.settings["enable_group_offload"] and preset.settings["gradient_checkpointing"]
    result = run_env(make_env("preset", **{**SHORT, **preset.settings}))
    assert_same_training(result, plain)


def test_cudnn_attention_is_turned_off_only_where_its_backward_fails() -> None:
    import torch

    from simpletuner.core.training.attention import avoid_broken_cudnn_attention

    def failing() -> None:
        raise RuntimeError("cuDNN Frontend error: mha_graph.execute(...) is_good() failed\nmore detail")

    enabled = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        assert avoid_broken_cudnn_attention(torch.bfloat16, probe=lambda: None) is None
        assert torch.backends.cuda.cudnn_sdp_enabled()
        reason = avoid_broken_cudnn_attention(torch.bfloat16, probe=failing)
        assert reason == "cuDNN Frontend error: mha_graph.execute(...) is_good() failed"
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(enabled)


def test_whole_model_compilation_trains_like_the_eager_model(make_env: Callable[..., str],
                                                             run_env: Callable[..., Any], plain: Any) -> None:
    """aot_eager traces the whole model through dynamo and AOTAutograd without generating code: the same
    arithmetic as eager, so the same losses."""
    result = run_env(make_env("whole", dynamo_backend="aot_eager", dynamo_dynamic=False, **SHORT))
    assert events_of(result.run_dir, "speedups")[0]["compiled"] == {"backend": "aot_eager", "modules": 1,
                                                                    "regional": False}
    assert losses(result) == pytest.approx(losses(plain), rel=1e-4)


def test_compile_options_follow_the_config() -> None:
    from simpletuner.core.config.core_options import CoreOptions
    from simpletuner.core.training.compile import backend_problem, compile_options

    core = CoreOptions(dynamo_backend="Inductor", dynamo_mode="max-autotune", dynamo_fullgraph=True,
                       dynamo_dynamic=False)
    assert compile_options(core) == {"backend": "inductor", "fullgraph": True, "dynamic": False,
                                     "mode": "max-autotune"}
    assert "mode" not in compile_options(CoreOptions(dynamo_backend="inductor", dynamo_mode="default"))
    problem = backend_problem(CoreOptions(dynamo_backend="tensorrt-magic"))
    assert problem is not None and "not a torch.compile backend of this torch build" in problem
    assert "inductor" in problem and backend_problem(CoreOptions(dynamo_backend="no")) is None


def assert_loads_into_stock_pipeline(result: Any, tiny_flux: Path) -> None:
    """The run's LoRA loads into diffusers' FluxPipeline as the same tensors."""
    import torch
    from diffusers import FluxPipeline
    from peft.utils import get_peft_model_state_dict

    pipeline = FluxPipeline.from_pretrained(str(tiny_flux), dtype=torch.float32)
    pipeline.load_lora_weights(str(result.output), adapter_name="trained")
    loaded = get_peft_model_state_dict(pipeline.transformer, adapter_name="trained")
    saved = {k.removeprefix("transformer."): v for k, v in lora_tensors(result).items()}
    assert loaded.keys() == saved.keys() and saved
    assert all(torch.equal(loaded[k], saved[k].to(loaded[k].dtype)) for k in saved)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("precision", ["int8-torchao", "fp8-torchao"])
def test_torchao_layers_take_their_input_in_the_autocast_dtype(precision: str) -> None:
    """A torchao tensor answers F.linear before autocast casts the input: the quantiser casts it as autocast casts a
    plain Linear's, so that float32 from CUDA autocast's LayerNorm does not flow on in float32."""
    import torch

    from simpletuner.plugins.quantizers.torchao import TorchaoQuantizer

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)).to(torch.bfloat16)
    TorchaoQuantizer().quantize(model, precision)
    x = torch.randn(4, 64)  # what a LayerNorm returns under CUDA autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16
    assert model(x.to(torch.bfloat16)).dtype == torch.bfloat16  # outside autocast: left as it comes


@pytest.mark.parametrize(("precision", "tensor"), [("int8-torchao", "Int8Tensor"), ("fp8-torchao", "Float8Tensor")])
def test_torchao_base_trains_a_loadable_lora(make_env: Callable[..., str], run_env: Callable[..., Any],
                                             tiny_flux: Path, monkeypatch: pytest.MonkeyPatch, precision: str,
                                             tensor: str) -> None:
    import torch
    import torchao.quantization

    seen: dict[str, Any] = {}
    attach = stages.attach_adapter

    def spy_attach(model: Any, *args: Any, **kwargs: Any) -> None:
        seen["to_q"] = type(model.transformer_blocks[0].attn.to_q.weight)
        seen["x_embedder"] = type(model.x_embedder.weight)  # one of the family's exclusions
        attach(model, *args, **kwargs)

    monkeypatch.setattr(stages, "attach_adapter", spy_attach)
    result = run_env(make_env("torchao", base_model_precision=precision, **{**SHORT, "max_train_steps": 16}))
    assert seen == {"to_q": getattr(torchao.quantization, tensor), "x_embedder": torch.nn.Parameter}
    run_losses = losses(result)
    assert sum(run_losses[-4:]) < sum(run_losses[:4]), run_losses
    assert_loads_into_stock_pipeline(result, tiny_flux)


def test_torchao_int8_base_with_group_offloading_trains_a_loadable_lora(
        make_env: Callable[..., str], run_env: Callable[..., Any], tiny_flux: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """diffusers' offloading moves torchao's quantised tensors whole (they are tensor subclasses, not plain data):
    the quantised base layers are the ones offloaded, the LoRA trains and loads into the stock pipeline."""
    import torchao.quantization

    from simpletuner.core.training import offload as offload_module

    offloaded: list[type] = []
    apply = offload_module.GroupOffload.apply

    def spy_apply(self: Any, module: Any, name: str, *, trained: bool = False) -> Any:
        if trained:
            offloaded.append(type(module.transformer_blocks[0].attn.to_q.weight))
        return apply(self, module, name, trained=trained)

    monkeypatch.setattr(offload_module.GroupOffload, "apply", spy_apply)
    result = run_env(make_env("torchao-offload", base_model_precision="int8-torchao", enable_group_offload=True,
                              **{**SHORT, "max_train_steps": 16}))
    assert offloaded == [torchao.quantization.Int8Tensor]
    assert events_of(result.run_dir, "speedups")[0]["offloaded"] == "transformer"
    run_losses = losses(result)
    assert sum(run_losses[-4:]) < sum(run_losses[:4]), run_losses
    assert_loads_into_stock_pipeline(result, tiny_flux)


@pytest.mark.parametrize(("settings", "reason"), [
    ({"fp8_training": True, "mixed_precision": "bf16"}, "fp8_training needs an NVIDIA GPU with float8 tensor cores"),
    ({"attention_mechanism": "flash-attn"}, "runs only on CUDA GPUs"),
    ({"attention_mechanism": "sageattention"}, "runs only on CUDA GPUs"),
])
def test_what_cannot_run_here_is_refused_before_training(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                         settings: dict[str, Any], reason: str) -> None:
    name = make_env("refused", **{**SHORT, **settings})
    with pytest.raises(SimpleTunerError, match=reason):
        run_env(name)
