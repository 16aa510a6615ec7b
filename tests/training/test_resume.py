"""Checkpoints: a run stopped after a checkpoint and resumed ends with the same weights as an uninterrupted run, in a
run folder of its own; half-written checkpoint folders are never picked by ``latest``; ``latest`` takes the newest
run of the environment that holds a checkpoint, else a checkpoint of the layout before run folders; the total limit
prunes the oldest within the run's folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import events_of

from simpletuner.core.training.checkpoints import STATE_FILE, complete_checkpoints, resolve_resume
from simpletuner.core.training.outputs import read_lora
from simpletuner.core.training.run_folders import create_run_folder, latest_checkpoint, run_folders
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(600)

SETTINGS = dict(images=6, max_train_steps=6, checkpointing_steps=2, checkpoints_total_limit=2, lora_dropout=0.1,
                caption_dropout_probability=0.3, gradient_accumulation_steps=2, train_batch_size=1,
                lr_scheduler="cosine", lr_warmup_steps=2, flux_guidance_mode="random-range")


class Stop(Exception):
    """Raised by a listener to stop a run as a kill would."""


def _resume_latest(workspace: Workspace, name: str) -> None:
    config_path = workspace.configs_dir / name / "config.json"
    config = json.loads(config_path.read_text())
    config["resume_from_checkpoint"] = "latest"
    config_path.write_text(json.dumps(config))


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_reaches_the_uninterrupted_weights(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                 workspace: Workspace) -> None:
    straight = run_env(make_env("straight", **SETTINGS))
    assert straight.run_dir.parent == straight.output_dir
    assert [p.name for _, p in complete_checkpoints(straight.run_dir)] == ["checkpoint-2", "checkpoint-4"]

    name = make_env("stopped", **SETTINGS)

    def stop_after_checkpoint_4(event: dict[str, Any]) -> None:
        if event["event"] == "checkpoint_saved" and event["step"] == 4:
            raise Stop

    with pytest.raises(Stop):
        run_env(name, listeners=[stop_after_checkpoint_4])
    output = workspace.root / "output" / name
    [stopped] = run_folders(output)
    assert events_of(stopped.path)[-1]["event"] == "failed"
    # debris of a crash while saving: neither may be resumed from
    (stopped.path / "checkpoint-5").mkdir()
    (stopped.path / ".checkpoint-6.partial").mkdir()
    before = _digests(stopped.path)
    _resume_latest(workspace, name)
    resumed = run_env(name)

    assert resumed.run_dir != stopped.path and resumed.run_dir.parent == output
    started = events_of(resumed.run_dir, "run_started")[-1]
    assert started["resumed_from"] == str(stopped.path / "checkpoint-4") and started["start_step"] == 4
    assert started["run_dir"] == str(resumed.run_dir)
    assert [e["step"] for e in events_of(resumed.run_dir, "step")] == [5, 6]
    assert _digests(stopped.path) == before  # the stopped run's folder is left as it was
    expected, _ = read_lora(straight.output, "transformer")
    actual, _ = read_lora(resumed.output, "transformer")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert (expected[key] - actual[key]).abs().max().item() < 1e-5, key


def test_a_checkpoint_of_the_layout_before_run_folders_is_resumed(make_env: Callable[..., str],
                                                                  run_env: Callable[..., Any],
                                                                  workspace: Workspace) -> None:
    name = make_env("legacy", train_batch_size=1, max_train_steps=4, checkpointing_steps=2)
    first = run_env(name)
    output = first.output_dir
    # what an earlier version left: checkpoints directly in output_dir, no run folder
    shutil.move(first.run_dir / "checkpoint-2", output / "checkpoint-2")
    shutil.rmtree(first.run_dir)
    before = _digests(output / "checkpoint-2")
    _resume_latest(workspace, name)
    resumed = run_env(name)

    started = events_of(resumed.run_dir, "run_started")[-1]
    assert started["resumed_from"] == str(output / "checkpoint-2") and started["start_step"] == 2
    assert [e["step"] for e in events_of(resumed.run_dir, "step")] == [3, 4]
    assert resumed.output == resumed.run_dir / "pytorch_lora_weights.safetensors"
    assert not (output / "pytorch_lora_weights.safetensors").exists()
    assert _digests(output / "checkpoint-2") == before


def _checkpoint(run: Path, step: int, complete: bool = True) -> Path:
    folder = run / f"checkpoint-{step}"
    folder.mkdir()
    if complete:
        (folder / STATE_FILE).write_text(json.dumps({"global_step": step}))
    return folder


def test_latest_is_the_highest_step_of_the_newest_run_that_has_one(tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    assert latest_checkpoint(output, "cats") is None
    legacy = _checkpoint(output, 900)
    assert latest_checkpoint(output, "cats") == legacy  # only checkpoints of the old layout: the highest of them

    older = create_run_folder(output, "cats", now=1000.0)
    _checkpoint(older, 2)
    high = _checkpoint(older, 10)
    assert latest_checkpoint(output, "cats") == high  # a run folder's checkpoint wins over the old layout

    newer = create_run_folder(output, "cats", job_id=7, now=2000.0)
    _checkpoint(newer, 2)
    newest_step = _checkpoint(newer, 4)
    _checkpoint(newer, 6, complete=False)  # half-written: never picked
    assert latest_checkpoint(output, "cats") == newest_step  # the newest run, though an older one went further

    create_run_folder(output, "cats", now=3000.0)  # a later run that saved nothing yet
    other = create_run_folder(output, "dogs", now=4000.0)
    _checkpoint(other, 50)  # another environment sharing the output folder
    (output / "not-a-run").mkdir()
    _checkpoint(output / "not-a-run", 99)  # no run.json: not a run folder
    assert latest_checkpoint(output, "cats") == newest_step
    assert latest_checkpoint(output, "dogs") == other / "checkpoint-50"
    assert [r.started_at for r in run_folders(output, "cats")] == [1000.0, 2000.0, 3000.0]


def test_run_folders_are_created_exclusively_with_their_record(tmp_path: Path) -> None:
    output = tmp_path / "output"
    first = create_run_folder(output, "cats", now=1738324805.2)
    second = create_run_folder(output, "cats", now=1738324805.7)  # the same second: a folder of its own
    job = create_run_folder(output, "cats", job_id=12, now=1738324805.2)
    assert [first.name, second.name, job.name] == ["20250131-120005-cats", "20250131-120005-cats-2",
                                                   "20250131-120005-cats-job12"]
    assert json.loads((job / "run.json").read_text()) == {"environment": "cats", "job_id": 12,
                                                          "started_at": 1738324805.2}
    assert [r.path for r in run_folders(output)] == [first, job, second]


def test_resume_from_an_incomplete_folder_is_refused(tmp_path: Path) -> None:
    from simpletuner.core.errors import SimpleTunerError

    (tmp_path / "checkpoint-3").mkdir()
    assert resolve_resume(lambda: latest_checkpoint(tmp_path, "any"), "latest", Path) is None
    with pytest.raises(SimpleTunerError, match="not a complete checkpoint"):
        resolve_resume(lambda: None, str(tmp_path / "checkpoint-3"), Path)
