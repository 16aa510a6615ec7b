"""Run folders through ``simpletuner train``: each run writes into a new folder of its own and leaves the others as
they were; ``latest`` resumes the newest run's checkpoint and the console says which; a folder a run already wrote
into is never handed to another run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import events_of

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.events import EVENTS_FILE
from simpletuner.core.training.run_folders import claim_run_folder, create_run_folder, run_folders
from simpletuner.core.workspace import Workspace


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.timeout(600)
def test_two_cli_runs_keep_two_folders_and_latest_resumes_the_first(make_env: Callable[..., str],
                                                                    run_cli: Callable[..., Any],
                                                                    workspace: Workspace) -> None:
    name = make_env("twice", train_batch_size=1, max_train_steps=4, checkpointing_steps=2)
    first = run_cli("train", "--env", name, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    output = workspace.root / "output" / name
    [one] = run_folders(output, name)
    assert one.job_id is None and one.path.name.endswith(f"-{name}")
    assert f"Model: {one.path / 'pytorch_lora_weights.safetensors'}" in first.stdout
    assert f"Run folder: {one.path}" in first.stdout
    assert (one.path / "checkpoint-2").is_dir() and (one.path / EVENTS_FILE).is_file()
    before = _digests(one.path)

    config_path = workspace.configs_dir / name / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "resume_from_checkpoint": "latest"}))
    second = run_cli("train", "--env", name, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    runs = run_folders(output, name)
    assert [r.path for r in runs][0] == one.path and len(runs) == 2
    two = runs[1].path
    assert f"Resuming from {one.path / 'checkpoint-2'} (step 2)" in second.stdout
    assert f"Model: {two / 'pytorch_lora_weights.safetensors'}" in second.stdout
    started = events_of(two, "run_started")[-1]
    assert started["resumed_from"] == str(one.path / "checkpoint-2") and started["start_step"] == 2
    assert [e["step"] for e in events_of(two, "step")] == [3, 4]
    assert _digests(one.path) == before  # the first run's model, checkpoint and events are untouched
    assert not (output / "pytorch_lora_weights.safetensors").exists() and not (output / EVENTS_FILE).exists()


@pytest.mark.timeout(60)
def test_a_run_folder_is_given_to_one_run_only(tmp_path: Path) -> None:
    fresh = create_run_folder(tmp_path, "cats", job_id=3)
    assert claim_run_folder(fresh) == fresh
    (fresh / EVENTS_FILE).write_text('{"event": "finished"}\n')
    with pytest.raises(SimpleTunerError, match="already holds a run's outputs"):
        claim_run_folder(fresh)
    (tmp_path / "plain").mkdir()
    with pytest.raises(SimpleTunerError, match="no valid run.json"):
        claim_run_folder(tmp_path / "plain")


@pytest.mark.timeout(60)
def test_a_relative_publisher_folder_is_checked_where_the_run_writes_it(workspace: Workspace) -> None:
    from simpletuner.core.config import load_environment
    from simpletuner.core.config.confinement import PathPolicy, config_path_problems
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.plugins import Registry

    # from output/pets the path climbs to the folder above the workspace's parent and back into the workspace,
    # but the run writes one level deeper, in its run folder: there it lands beside the workspace, outside it
    root = workspace.root
    sneaky = f"../../../../{root.parent.name}/{root.name}/published"
    assert (root / "output" / "pets" / sneaky).resolve() == root / "published"
    folder = workspace.configs_dir / "pets"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_family": "flux", "output_dir": "output/pets",
                                                    "local_publish_dir": sneaky}))
    (workspace.datasets_dir / "pets").mkdir(parents=True)
    (folder / "multidatabackend.json").write_text(json.dumps([
        {"id": "pets", "instance_data_dir": "datasets/pets"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"}]))
    registry = Registry()
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), "pets", registry)
    problems = config_path_problems(workspace, loaded.environment, loaded.config, PathPolicy.for_workspace(workspace))
    assert len(problems) == 1 and "$.local_publish_dir" in problems[0], problems
    assert str(root.parent / root.parent.name / root.name / "published") in problems[0]
