"""Checkpoints: a run stopped after a checkpoint and resumed ends with the same weights as an uninterrupted run;
half-written checkpoint folders are never picked by ``latest``; the total limit prunes the oldest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import events_of

from simpletuner.core.training.checkpoints import complete_checkpoints, resolve_resume
from simpletuner.core.training.outputs import read_lora
from simpletuner.core.workspace import Workspace

SETTINGS = dict(images=6, max_train_steps=6, checkpointing_steps=2, checkpoints_total_limit=2, lora_dropout=0.1,
                caption_dropout_probability=0.3, gradient_accumulation_steps=2, train_batch_size=1,
                lr_scheduler="cosine", lr_warmup_steps=2, flux_guidance_mode="random-range")


class Stop(Exception):
    """Raised by a listener to stop a run as a kill would."""


def test_resume_reaches_the_uninterrupted_weights(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                 workspace: Workspace) -> None:
    straight = run_env(make_env("straight", **SETTINGS))
    assert [p.name for _, p in complete_checkpoints(straight.output_dir)] == ["checkpoint-2", "checkpoint-4"]

    name = make_env("stopped", **SETTINGS)

    def stop_after_checkpoint_4(event: dict[str, Any]) -> None:
        if event["event"] == "checkpoint_saved" and event["step"] == 4:
            raise Stop

    with pytest.raises(Stop):
        run_env(name, listeners=[stop_after_checkpoint_4])
    output = workspace.root / "output" / name
    assert events_of(output)[-1]["event"] == "failed"
    # debris of a crash while saving: neither may be resumed from
    (output / "checkpoint-5").mkdir()
    (output / ".checkpoint-6.partial").mkdir()
    config_path = workspace.configs_dir / name / "config.json"
    config = json.loads(config_path.read_text())
    config["resume_from_checkpoint"] = "latest"
    config_path.write_text(json.dumps(config))
    resumed = run_env(name)

    started = events_of(output, "run_started")[-1]
    assert started["resumed_from"].endswith("checkpoint-4") and started["start_step"] == 4
    assert [e["step"] for e in events_of(output, "step")][-2:] == [5, 6]
    expected, _ = read_lora(straight.output, "transformer")
    actual, _ = read_lora(resumed.output, "transformer")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert (expected[key] - actual[key]).abs().max().item() < 1e-5, key


def test_resume_from_an_incomplete_folder_is_refused(tmp_path: Path) -> None:
    from simpletuner.core.errors import SimpleTunerError

    (tmp_path / "checkpoint-3").mkdir()
    assert resolve_resume(tmp_path, "latest", Path) is None
    with pytest.raises(SimpleTunerError, match="not a complete checkpoint"):
        resolve_resume(tmp_path, str(tmp_path / "checkpoint-3"), Path)
