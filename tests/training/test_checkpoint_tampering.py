"""Resuming real runs: a checkpoint this version wrote continues bit for bit, moving average included; a planted
pickle or a truncated file in any of its state files, or a pickled checkpoint of an earlier version, stops the run
with a message naming the file, and nothing in the file runs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from checkpoint_helpers import global_rng_kept, plant_pickle

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.training.checkpoints import OPTIMIZER_FILE, SCHEDULER_FILE, STATE_FILE, rng_file
from simpletuner.core.training.outputs import read_lora
from simpletuner.core.training.saving import EMA_FILE
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(300)

SETTINGS = dict(images=4, max_train_steps=3, checkpointing_steps=1, train_batch_size=1, lora_dropout=0.1,
                caption_dropout_probability=0.3, lr_scheduler="cosine", lr_warmup_steps=1, use_ema=True,
                ema_decay=0.9, flux_guidance_mode="random-range")
STATE_FILES = [OPTIMIZER_FILE, SCHEDULER_FILE, rng_file(0), EMA_FILE, STATE_FILE]
DAMAGED = "is damaged or was not written by SimpleTuner"


@pytest.fixture(autouse=True)
def _global_rng_restored() -> Iterator[None]:
    with global_rng_kept():
        yield


@pytest.fixture
def resume(workspace: Workspace, run_env: Callable[..., Any]) -> Callable[[str, str], tuple[Any, dict[str, Any]]]:
    """Run an environment again with ``resume_from_checkpoint`` set; returns the result and its run_started event."""

    def run(name: str, checkpoint: str) -> tuple[Any, dict[str, Any]]:
        config_path = workspace.configs_dir / name / "config.json"
        config = json.loads(config_path.read_text())
        config["resume_from_checkpoint"] = checkpoint
        config_path.write_text(json.dumps(config))
        started: list[dict[str, Any]] = []
        result = run_env(name, listeners=[lambda e: started.append(e) if e["event"] == "run_started" else None])
        return result, started[-1]

    return run


def _copy(checkpoint: Path, workspace: Workspace, label: str) -> Path:
    copy = workspace.root / "copies" / label / checkpoint.name
    shutil.copytree(checkpoint, copy)
    return copy


def test_a_copied_checkpoint_resumes_bit_for_bit(make_env: Callable[..., str], run_env: Callable[..., Any],
                                                 resume: Callable[..., Any], workspace: Workspace) -> None:
    straight = run_env(make_env("straight", **SETTINGS))
    expected, _ = read_lora(straight.output, "transformer")
    checkpoint = straight.output.parent / "checkpoint-2"  # checkpoints lie beside the run's final model
    assert {p.name for p in checkpoint.iterdir()} >= set(STATE_FILES)
    assert not list(checkpoint.glob("*.pt"))

    copy = _copy(checkpoint, workspace, "intact")
    resumed, started = resume("straight", str(copy))
    assert started["resumed_from"] == str(copy) and started["start_step"] == 2 and resumed.step == 3
    actual, _ = read_lora(resumed.output, "transformer")
    assert expected.keys() == actual.keys()
    assert all(expected[key].equal(actual[key]) for key in expected)


def test_a_tampered_checkpoint_stops_the_resume_without_running_anything(
        make_env: Callable[..., str], run_env: Callable[..., Any], resume: Callable[..., Any],
        workspace: Workspace, tmp_path: Path) -> None:
    checkpoint = run_env(make_env("victim", **{**SETTINGS, "max_train_steps": 2})).output.parent / "checkpoint-1"
    marker = tmp_path / "pwned"

    def plant(file: Path) -> None:
        plant_pickle(file, marker)

    def truncate(file: Path) -> None:
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])

    cases = [(name, how) for name in STATE_FILES for how in (plant, truncate)]
    for name, how in cases:
        copy = _copy(checkpoint, workspace, f"{how.__name__}-{name}")
        how(copy / name)
        with pytest.raises(SimpleTunerError, match=DAMAGED) as caught:
            resume("victim", str(copy))
        assert str(copy / name) in str(caught.value), (name, how.__name__)
        assert not marker.exists(), (name, how.__name__)

    # a pickle beside intact files, named as earlier versions named their state files
    copy = _copy(checkpoint, workspace, "old-names")
    plant(copy / "optimizer.pt")
    with pytest.raises(SimpleTunerError, match=r"holds pickle files \(optimizer.pt\).*start fresh"):
        resume("victim", str(copy))
    assert not marker.exists()


def test_latest_refuses_a_pickled_checkpoint_of_an_earlier_version(make_env: Callable[..., str],
                                                                   resume: Callable[..., Any],
                                                                   workspace: Workspace, tmp_path: Path) -> None:
    name = make_env("upgraded", **SETTINGS)
    old = workspace.root / "output" / name / "checkpoint-4"
    old.mkdir(parents=True)
    (old / STATE_FILE).write_text(json.dumps({"global_step": 4, "seed": 7}))
    marker = tmp_path / "pwned"
    for legacy in ("optimizer.pt", "scheduler.pt", "rng_state_0.pt", "ema.pt"):
        plant_pickle(old / legacy, marker)
    with pytest.raises(SimpleTunerError, match=r"\(ema.pt, optimizer.pt, rng_state_0.pt, scheduler.pt\), as earlier "
                                               r"versions.*start fresh \(unset resume_from_checkpoint\)"):
        resume(name, "latest")
    assert not marker.exists()
