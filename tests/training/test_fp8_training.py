"""FP8 training (``fp8_training``) on the tiny Flux through torchao's float8 emulation (the same casts, scales and
padding as on a float8 GPU, the matmuls in fp32): LoRA and full-rank runs train to a falling loss, the LoRA loads into
the stock pipeline, every float8 matmul gets operands the float8 kernels accept, and a GPU without float8 tensor cores
is refused with its reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import events_of

from simpletuner.core.training import fp8

pytestmark = pytest.mark.timeout(300)

#: Batch size 1 gives the time-embedding layers a single row, and 13 caption tokens a row count that is no
#: multiple of 16: both are inner dimensions of a weight-gradient matmul the float8 kernels refuse unpadded.
FP8 = {"images": 2, "train_batch_size": 1, "max_train_steps": 8, "learning_rate": 1e-2, "lora_rank": 8,
       "max_grad_norm": 1.0, "mixed_precision": "bf16", "fp8_training": True, "flux_t5_max_tokens": 13}


@pytest.fixture
def matmuls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]]:
    """Float8 emulation on the CPU; records (first operand, second operand, unpadded inner sizes) of every float8
    matmul as the kernel would receive them."""
    from torchao.float8 import float8_ops

    monkeypatch.setattr(fp8, "_emulate", True)
    seen: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]] = []
    original = float8_ops.preprocess_addmm

    def spy(a: Any, b: Any) -> Any:
        prepared = original(a, b)
        seen.append((tuple(prepared[0].shape), tuple(prepared[2].shape), (a._data.shape[1], b._data.shape[0])))
        return prepared

    monkeypatch.setattr(float8_ops, "preprocess_addmm", spy)
    return seen


def losses(result: Any) -> list[float]:
    return [e["loss"] for e in events_of(result.run_dir, "step")]


def assert_kernel_shapes(seen: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]]) -> None:
    assert seen
    for a, b, _ in seen:
        assert a[1] % 16 == 0 and b[0] % 16 == 0 and b[1] % 16 == 0, (a, b)
    assert any(inner % 16 for inner, _ in (s[2] for s in seen)), "some inner dimension needed padding"


def test_fp8_lora_trains_and_loads_into_the_stock_pipeline(make_env: Callable[..., str],
                                                           run_env: Callable[..., Any], tiny_flux: Path,
                                                           matmuls: list[Any]) -> None:
    import torch
    from diffusers import FluxPipeline
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    result = run_env(make_env("fp8-lora", **{**FP8, "max_train_steps": 12}))
    assert events_of(result.run_dir, "speedups")[0]["fp8_layers"] > 0
    assert_kernel_shapes(matmuls)
    run_losses = losses(result)
    assert all(map(torch.isfinite, torch.tensor(run_losses))), run_losses
    assert sum(run_losses[-4:]) < sum(run_losses[:4]), run_losses
    pipeline = FluxPipeline.from_pretrained(str(tiny_flux), dtype=torch.float32)
    pipeline.load_lora_weights(str(result.output), adapter_name="trained")
    loaded = get_peft_model_state_dict(pipeline.transformer, adapter_name="trained")
    saved = {k.removeprefix("transformer."): v for k, v in load_file(str(result.output)).items()}
    assert loaded.keys() == saved.keys() and saved
    assert all(torch.equal(loaded[k], saved[k].to(loaded[k].dtype)) for k in saved)


def test_fp8_full_rank_trains(make_env: Callable[..., str], run_env: Callable[..., Any], matmuls: list[Any]) -> None:
    import torch

    result = run_env(make_env("fp8-full", **{**FP8, "model_type": "full", "learning_rate": 1e-4,
                                             "max_train_steps": 12}))
    assert_kernel_shapes(matmuls)
    run_losses = losses(result)
    assert all(map(torch.isfinite, torch.tensor(run_losses))), run_losses
    assert sum(run_losses[-4:]) < sum(run_losses[:4]), run_losses


def test_only_layers_with_dimensions_of_multiples_of_16_convert(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torchao.float8.float8_linear import Float8Linear

    monkeypatch.setattr(fp8, "_emulate", True)
    model = torch.nn.ModuleDict({"both": torch.nn.Linear(32, 48), "rows": torch.nn.Linear(32, 40),
                                 "columns": torch.nn.Linear(24, 16), "neither": torch.nn.Linear(10, 10)})
    assert fp8.convert_to_fp8(model, "cpu") == 1
    assert isinstance(model["both"], Float8Linear)
    assert [type(model[k]) for k in ("rows", "columns", "neither")] == [torch.nn.Linear] * 3


@pytest.mark.parametrize(("capability", "refused"), [((8, 6), True), ((8, 0), True), ((8, 9), False),
                                                     ((9, 0), False)])
def test_gpus_without_float8_tensor_cores_are_refused(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int],
                                                      refused: bool) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test GPU")
    problem = fp8.fp8_problem(torch.device("cuda", 0))
    if refused:
        assert problem == (f"fp8_training needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); NVIDIA "
                           f"Test GPU has {capability[0]}.{capability[1]}; turn fp8_training off")
    else:
        assert problem is None
    assert "this run has none; turn fp8_training off" in str(fp8.fp8_problem("cpu"))
