"""Checkpoint state files: optimizer, scheduler, random and EMA states come back exactly (a resumed step is bit for
bit the uninterrupted one, for every optimizer the engine builds), and a planted pickle, a truncated file or a state
of the wrong shape is refused with a message naming the file, without running anything."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from checkpoint_helpers import global_rng_kept, plant_pickle
from safetensors.torch import save_file

from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.training.checkpoints import (
    OPTIMIZER_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    CheckpointWriter,
    load_ema,
    load_optimizer_and_scheduler,
    load_rng,
    load_state,
    rng_file,
)
from simpletuner.core.training.optim import build_optimizer, build_scheduler
from simpletuner.core.training.saving import EMA_FILE
from simpletuner.core.training.state_files import DamagedStateError, read_state, write_state

pytestmark = pytest.mark.timeout(120)

DAMAGED = "is damaged or was not written by SimpleTuner"


@pytest.fixture(autouse=True)
def _global_rng_restored() -> Iterator[None]:
    with global_rng_kept():
        yield


def _same(a: Any, b: Any) -> bool:
    """Equal values of identical types all the way down (a tuple is not a list, 1 is not 1.0, dtypes match)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _params(dtype: torch.dtype = torch.float32) -> list[torch.nn.Parameter]:
    # a matrix and a vector: Adafactor keeps factored statistics for the one, full ones for the other
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(6, 4, generator=gen).to(dtype)),
            torch.nn.Parameter(torch.randn(4, generator=gen).to(dtype))]


def _train(params: list[torch.nn.Parameter], optimizer: Any, scheduler: Any, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
        optimizer.step()
        scheduler.step()


def _writer(folder: Path) -> CheckpointWriter:
    return CheckpointWriter(folder, rank=0, is_main=True, barrier=lambda: None, total_limit=None)


def _save(folder: Path, step: int, optimizer: Any, scheduler: Any, generator: torch.Generator) -> Path:
    checkpoint, _ = _writer(folder).save(step, weights=lambda _: None, optimizer=optimizer, scheduler=scheduler,
                                         generator=generator, state={"global_step": step, "seed": 7})
    return checkpoint


def test_state_round_trips_with_exact_types(tmp_path: Path) -> None:
    state = {"groups": [{"betas": (0.9, 0.999), "lr": 1.0, "steps": 3, "fused": None, "amsgrad": False}],
             "by_index": {0: {"step": torch.tensor(3.0)}, 12: {}}, (1, "a"): "tuple key",
             "floats": [0.1 + 0.2, 1e-300, float("inf"), -0.0],
             "tensors": [torch.arange(7, dtype=torch.uint8), torch.tensor(1.5, dtype=torch.bfloat16),
                         torch.zeros(0, 3), torch.randn(2, 3).t()],  # the last is not contiguous
             "nested": ((), [], {}, "text")}
    write_state(tmp_path / "state.safetensors", state)
    assert _same(read_state(tmp_path / "state.safetensors"), state)


def test_writing_a_value_it_cannot_represent_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot hold a float64"):
        write_state(tmp_path / "state.safetensors", {"lr": np.float64(0.1)})


@pytest.mark.parametrize(("overrides", "dtype", "fused"), [
    pytest.param({"optimizer": "adamw"}, torch.float32, True, id="adamw-fused"),
    pytest.param({"optimizer": "adamw", "mixed_precision": "fp16"}, torch.float32, None, id="adamw-default"),
    pytest.param({"optimizer": "adamw_bf16"}, torch.bfloat16, None, id="adamw_bf16-kahan"),
    pytest.param({"optimizer": "adafactor"}, torch.float32, None, id="adafactor"),
])
def test_optimizer_and_scheduler_resume_bit_for_bit(tmp_path: Path, overrides: dict[str, Any], dtype: torch.dtype,
                                                    fused: bool | None) -> None:
    core = CoreOptions(learning_rate=1e-2, lr_scheduler="cosine", lr_warmup_steps=2, **overrides)

    def build() -> tuple[list[torch.nn.Parameter], Any, Any]:
        params = _params(dtype)
        optimizer = build_optimizer(params, core)
        return params, optimizer, build_scheduler(optimizer, core, 10)

    params, optimizer, scheduler = build()
    assert optimizer.defaults.get("fused") is fused
    _train(params, optimizer, scheduler, 3, seed=1)
    checkpoint = _save(tmp_path, 3, optimizer, scheduler, torch.Generator())

    resumed_params, resumed_optimizer, resumed_scheduler = build()
    with torch.no_grad():
        for resumed, saved in zip(resumed_params, params, strict=True):
            resumed.copy_(saved)
    load_optimizer_and_scheduler(checkpoint, resumed_optimizer, resumed_scheduler)
    assert _same(resumed_optimizer.state_dict(), optimizer.state_dict())
    assert _same(resumed_scheduler.state_dict(), scheduler.state_dict())

    _train(params, optimizer, scheduler, 4, seed=2)
    _train(resumed_params, resumed_optimizer, resumed_scheduler, 4, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(params, resumed_params, strict=True))
    assert resumed_scheduler.get_last_lr() == scheduler.get_last_lr()


def test_ema_resumes_bit_for_bit(tmp_path: Path) -> None:
    from diffusers.training_utils import EMAModel

    def drift(params: list[torch.nn.Parameter], seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn(p.shape, generator=gen))

    params = _params()
    ema = EMAModel(params, decay=0.9, foreach=True)
    for seed in range(3):
        drift(params, seed)
        ema.step(params)
    write_state(tmp_path / EMA_FILE, ema.state_dict())

    resumed_params = _params()
    with torch.no_grad():
        for resumed, saved in zip(resumed_params, params, strict=True):
            resumed.copy_(saved)
    resumed = EMAModel(resumed_params, decay=0.9, foreach=True)
    load_ema(tmp_path / EMA_FILE, resumed)
    assert _same(resumed.state_dict(), ema.state_dict())
    for seed in (10, 11):
        drift(params, seed)
        drift(resumed_params, seed)
        ema.step(params)
        resumed.step(resumed_params)
    assert all(torch.equal(a, b) for a, b in zip(ema.shadow_params, resumed.shadow_params, strict=True))


def _draws(generator: torch.Generator) -> list[Any]:
    return [random.random(), float(np.random.standard_normal()), torch.rand(3).tolist(),
            torch.rand(3, generator=generator).tolist()]


def test_random_states_resume_bit_for_bit(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    generator = torch.Generator().manual_seed(4)
    np.random.standard_normal()  # NumPy now holds a cached second Gaussian: part of the state too
    _draws(generator)
    optimizer = torch.optim.AdamW(_params())
    checkpoint = _save(tmp_path, 1, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                       generator)
    expected = _draws(generator)
    _draws(generator)
    load_rng(checkpoint, 0, generator)
    assert _draws(generator) == expected


def test_a_missing_rank_names_the_process_count(tmp_path: Path) -> None:
    with pytest.raises(SimpleTunerError, match="no random state for process 1"):
        load_rng(tmp_path, 1, torch.Generator())


@pytest.fixture
def saved(tmp_path: Path) -> dict[str, Any]:
    """A checkpoint written from a short AdamW + cosine run with an EMA, and a loader per file into fresh objects."""
    from diffusers.training_utils import EMAModel

    core = CoreOptions(learning_rate=1e-2, lr_scheduler="cosine", lr_warmup_steps=2)

    def build() -> tuple[list[torch.nn.Parameter], Any, Any, Any]:
        params = _params()
        optimizer = build_optimizer(params, core)
        return params, optimizer, build_scheduler(optimizer, core, 10), EMAModel(params, decay=0.9)

    params, optimizer, scheduler, ema = build()
    _train(params, optimizer, scheduler, 2, seed=1)
    ema.step(params)
    checkpoint = _save(tmp_path / "output", 2, optimizer, scheduler, torch.Generator())
    write_state(checkpoint / EMA_FILE, ema.state_dict())

    def into_fresh(name: str) -> None:
        _, fresh_optimizer, fresh_scheduler, fresh_ema = build()
        if name in (OPTIMIZER_FILE, SCHEDULER_FILE):
            load_optimizer_and_scheduler(checkpoint, fresh_optimizer, fresh_scheduler)
        elif name == EMA_FILE:
            load_ema(checkpoint / EMA_FILE, fresh_ema)
        elif name == STATE_FILE:
            load_state(checkpoint)
        else:
            load_rng(checkpoint, 0, torch.Generator())

    return {"checkpoint": checkpoint, "load": into_fresh, "scheduler": scheduler, "ema": ema}


STATE_FILES = [OPTIMIZER_FILE, SCHEDULER_FILE, rng_file(0), EMA_FILE, STATE_FILE]


def _refused(saved: dict[str, Any], name: str, match: str = DAMAGED) -> SimpleTunerError:
    with pytest.raises(SimpleTunerError, match=match) as caught:
        saved["load"](name)
    assert str(saved["checkpoint"] / name) in str(caught.value)
    return caught.value


def test_the_planted_payload_is_live(tmp_path: Path) -> None:
    """What the refusals below guard against: loading the planted file the old way runs its code."""
    plant_pickle(tmp_path / "optimizer.pt", tmp_path / "ran")
    torch.load(tmp_path / "optimizer.pt", weights_only=False)
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("name", STATE_FILES)
def test_every_file_loads_intact(saved: dict[str, Any], name: str) -> None:
    saved["load"](name)


@pytest.mark.parametrize("name", STATE_FILES)
def test_a_planted_pickle_is_refused_without_running(saved: dict[str, Any], name: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plant_pickle(saved["checkpoint"] / name, marker)
    error = _refused(saved, name)
    assert isinstance(error, DamagedStateError)
    assert not marker.exists()


@pytest.mark.parametrize("name", STATE_FILES)
def test_a_truncated_file_is_refused(saved: dict[str, Any], name: str) -> None:
    file = saved["checkpoint"] / name
    content = file.read_bytes()
    # the last cut drops the final byte before any trailing newline (which JSON does not need)
    for size in sorted({0, 4, 8, 30, len(content) // 2, len(content.rstrip()) - 1}):
        file.write_bytes(content[:size])
        _refused(saved, name)


# a missing random state means another process count: its own message, tested above
@pytest.mark.parametrize("name", [n for n in STATE_FILES if n != rng_file(0)])
def test_a_missing_file_is_refused(saved: dict[str, Any], name: str) -> None:
    (saved["checkpoint"] / name).unlink()
    _refused(saved, name)


@pytest.mark.parametrize("name", STATE_FILES[:-1])
def test_a_foreign_safetensors_file_is_refused(saved: dict[str, Any], name: str) -> None:
    save_file({"lora_A.weight": torch.zeros(2, 2)}, str(saved["checkpoint"] / name))
    _refused(saved, name, "holds no SimpleTuner state")


@pytest.mark.parametrize(("name", "other"), [(n, o) for n in STATE_FILES[:-1] for o in STATE_FILES[:-1] if n != o])
def test_another_files_state_is_refused(saved: dict[str, Any], name: str, other: str) -> None:
    checkpoint = saved["checkpoint"]
    (checkpoint / name).write_bytes((checkpoint / other).read_bytes())
    _refused(saved, name)


@pytest.mark.parametrize("structure", [
    "not JSON", json.dumps({"dict": 3}), json.dumps({"tensor": "absent"}), json.dumps({"tuple": [], "dict": []}),
    json.dumps({"dict": [[[], 1]]}), "[" * 100_000 + "]" * 100_000,
])
@pytest.mark.parametrize("name", STATE_FILES[:-1])
def test_a_malformed_structure_is_refused(saved: dict[str, Any], name: str, structure: str) -> None:
    save_file({}, str(saved["checkpoint"] / name), metadata={"simpletuner.state": structure})
    _refused(saved, name)


@pytest.mark.parametrize("content", ['{"global_step": "3"}', '{"global_step": -1}', "[4]", '{"seed": 7}', "{"])
def test_a_malformed_training_state_is_refused(saved: dict[str, Any], content: str) -> None:
    (saved["checkpoint"] / STATE_FILE).write_text(content)
    _refused(saved, STATE_FILE)


@pytest.mark.parametrize(("name", "edit", "reason"), [
    (SCHEDULER_FILE, lambda s: {**s, "optimizer": "replaced"}, "unexpected entry 'optimizer'"),
    (SCHEDULER_FILE, lambda s: {**s, "base_lrs": ["0.01"]}, r"base_lrs'\]\[0\] is a string"),
    (EMA_FILE, lambda s: {**s, "shadow_params": s["shadow_params"][:1]}, "has 1 entries, expected 2"),
    (EMA_FILE, lambda s: {**s, "shadow_params": [p.flatten() for p in s["shadow_params"]]}, "has shape"),
    (EMA_FILE, lambda s: {**s, "decay": 7.0}, "Decay must be between 0 and 1"),
    (OPTIMIZER_FILE, lambda s: {**s, "state": {str(k): v for k, v in s["state"].items()}}, "parameter index"),
    (OPTIMIZER_FILE, lambda s: {**s, "param_groups": s["param_groups"] * 2}, "parameter groups"),
    (rng_file(0), lambda s: {**s, "python": (3, (1, 2), None)}, "state vector"),
    (rng_file(0), lambda s: {**s, "torch": s["torch"][:-1]}, ""),
])
def test_a_state_of_the_wrong_shape_is_refused(saved: dict[str, Any], name: str,
                                                edit: Callable[[Any], Any], reason: str) -> None:
    file = saved["checkpoint"] / name
    write_state(file, edit(read_state(file)))
    _refused(saved, name, f"{DAMAGED} .*{reason}")
