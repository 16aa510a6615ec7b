"""The stages of a run, called one by one on the tiny Flux pipeline: each builds its result whole from the results of
the stages before it, so a stage can be checked on its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(300)


def _run(workspace: Workspace, name: str):  # type: ignore[no-untyped-def]
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.events import EventWriter
    from simpletuner.core.plugins import Registry
    from simpletuner.core.training import stages
    from simpletuner.core.training.acceleration import build_accelerator
    from simpletuner.core.training.resolve import resolve_run

    registry = Registry()
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), name, registry)
    resolved = resolve_run(loaded, workspace, registry)
    accelerator = build_accelerator(loaded.config.core, resolved.family, lambda p: Path(p))
    folder = workspace.root / "run-folder"
    folder.mkdir()
    return stages.Run(loaded, workspace, registry, resolved, folder, accelerator, EventWriter(folder / "events.jsonl"))


def test_each_stage_builds_its_result_from_the_ones_before(workspace: Workspace,
                                                           make_env: Callable[..., str]) -> None:
    from simpletuner.core.training import stages

    run = _run(workspace, make_env("staged", max_train_steps=3, validation_prompt="a red circle",
                                   validation_resolution="64", validation_num_inference_steps=1))
    begun = stages.start(run)
    assert begun.seed == 7 and begun.resume is None and begun.validation is not None

    data = stages.data(run, begun)
    assert data.planner.batches_per_epoch() == 3  # six images, batches of two

    cached = stages.caches(run, begun, data)
    assert cached.encoder_calls["latents"] > 0 and cached.encoder_calls["text"] > 0
    assert "vae" in cached.keep and "transformer" not in cached.keep  # validation keeps the pipeline's encoders

    adapted = stages.model_and_adapter(run, cached.dtype)
    trainable = {name for name, p in adapted.transformer.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert len(adapted.params) == len(trainable) and adapted.ema is None

    accelerated = stages.accelerate(run, begun, data, adapted)
    assert (accelerated.start_step, accelerated.total_steps, accelerated.steps_per_epoch) == (0, 3, 3)
    assert accelerated.scheduler.get_last_lr()[0] == pytest.approx(1e-3)
    run.events.close()


def test_a_fresh_run_without_validation_keeps_no_encoder(workspace: Workspace,
                                                         make_env: Callable[..., str]) -> None:
    from simpletuner.core.training import stages

    run = _run(workspace, make_env("plain"))
    begun = stages.start(run)
    assert begun.validation is None
    cached = stages.caches(run, begun, stages.data(run, begun))
    assert cached.keep == [] and cached.components.loaded == {}
    run.events.close()
