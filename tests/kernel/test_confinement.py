"""Path confinement and privileged values in the kernel: every option that names a file is checked with symbolic
links followed; the training process started by a server checks paths and approvals again before it opens
anything, and a run by the machine's own user is not confined."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simpletuner.core.config.confinement import ROOTS_ENV_VAR, PathPolicy
from simpletuner.core.config.job_guard import APPROVED_ENV_VAR, job_guard_problems
from simpletuner.core.config.loading import load_environment
from simpletuner.core.config.trust import own_privileged
from simpletuner.core.environments import EnvironmentStore
from simpletuner.core.options import PATH, PRIVILEGED
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def _environment(workspace: Workspace, **config: object) -> EnvironmentStore:
    data = workspace.datasets_dir / "pets"
    data.mkdir(parents=True, exist_ok=True)
    folder = workspace.configs_dir / "pets"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_family": "flux", "output_dir": "output/pets", **config}))
    (folder / "multidatabackend.json").write_text(json.dumps([
        {"id": "pets", "instance_data_dir": "datasets/pets"},
        {"id": "embeds", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"}]))
    return EnvironmentStore(workspace.configs_dir)


def test_built_in_options_declare_their_trust_class(registry: Registry) -> None:
    from simpletuner.core.config.loading import build_schema

    trust = {info.key: info.trust for info in build_schema(registry).options}
    for key in ("post_checkpoint_script", "post_upload_script", "validation_external_script", "hub_endpoint",
                "aws_endpoint_url", "main_process_ip"):
        assert trust[key] == PRIVILEGED, key
    for key in ("output_dir", "data_backend_config", "lycoris_config", "init_lora", "resume_from_checkpoint",
                "pretrained_model_name_or_path", "local_publish_dir", "logging_dir", "offload_param_path"):
        assert trust[key] == PATH, key


def test_the_server_hands_its_policy_to_the_trainer_which_checks_it_again(workspace: Workspace,
                                                                          registry: Registry,
                                                                          tmp_path: Path) -> None:
    store = _environment(workspace)
    loaded = load_environment(workspace, store, "pets", registry)
    policy = PathPolicy.for_workspace(workspace, denied=[workspace.root / "secrets"])
    environ = policy.to_environ() | {APPROVED_ENV_VAR: "{}"}
    assert job_guard_problems(workspace, store, loaded, registry, environ) == []

    # a symbolic link planted after the server checked: the trainer sees through it
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (workspace.datasets_dir / "pets").rmdir()
    (workspace.datasets_dir / "pets").symlink_to(outside)
    problems = job_guard_problems(workspace, store, loaded, registry, environ)
    assert len(problems) == 1 and "instance_data_dir" in problems[0] and str(outside) in problems[0]
    # a run by the machine's own user is not confined
    assert job_guard_problems(workspace, store, loaded, registry, {}) == []


def test_privileged_values_must_match_the_approved_digest(workspace: Workspace, registry: Registry) -> None:
    store = _environment(workspace, post_checkpoint_script="true {global_step}")
    loaded = load_environment(workspace, store, "pets", registry)
    digest = own_privileged(workspace, store, store.get("pets"), registry).digest
    assert job_guard_problems(workspace, store, loaded, registry, {APPROVED_ENV_VAR: json.dumps({"pets": digest})}) \
        == []
    problems = job_guard_problems(workspace, store, loaded, registry, {APPROVED_ENV_VAR: "{}"})
    assert len(problems) == 1 and "config: post_checkpoint_script" in problems[0]
    with pytest.raises(Exception, match=APPROVED_ENV_VAR):
        job_guard_problems(workspace, store, loaded, registry, {APPROVED_ENV_VAR: "[1]"})
    with pytest.raises(Exception, match=ROOTS_ENV_VAR):
        job_guard_problems(workspace, store, loaded, registry, {ROOTS_ENV_VAR: "/"})


def test_train_started_by_a_server_refuses_a_path_outside_before_loading_anything(workspace: Workspace,
                                                                                run_cli, tmp_path: Path) -> None:
    _environment(workspace, output_dir=str(tmp_path / "exfiltrate"))
    policy = PathPolicy.for_workspace(workspace)
    done = run_cli("train", "--env", "pets", env=policy.to_environ())
    assert done.returncode == 1
    assert "$.output_dir" in done.stderr and "outside the allowed roots" in done.stderr
    assert not (tmp_path / "exfiltrate").exists()


def test_a_run_name_never_leads_tensorboard_out_of_its_log_folder(tmp_path: Path) -> None:
    from simpletuner.core.interfaces import RunInfo
    from simpletuner.trackers.tensorboard import TensorBoardOptions
    from simpletuner.trackers.tensorboard.tracker import TensorBoardTracker

    tracker = TensorBoardTracker(TensorBoardOptions(logging_dir="logs"))
    tracker.start(RunInfo(project_name="p", run_name="../../../escape", output_dir=tmp_path / "run", config={}))
    try:
        assert tracker.log_dir is not None and tracker.log_dir.parent == tmp_path / "run" / "logs"
    finally:
        tracker.finish("completed")
    assert not (tmp_path / "escape").exists()


def test_nvme_folders_inside_a_deepspeed_config_are_confined(workspace: Workspace, registry: Registry,
                                                             tmp_path: Path) -> None:
    """DeepSpeed writes its NVMe swap files where its config says: those folders are checked like any path option,
    in an inline config and in a config file (read only when the file itself is allowed)."""
    zero = {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": str(tmp_path / "swap")}}
    environ = PathPolicy.for_workspace(workspace).to_environ() | {APPROVED_ENV_VAR: "{}"}
    inline = _environment(workspace, model_type="full", deepspeed_config=json.dumps({"zero_optimization": zero}))
    loaded = load_environment(workspace, inline, "pets", registry)
    problems = job_guard_problems(workspace, inline, loaded, registry, environ)
    assert len(problems) == 1, problems
    assert problems[0].startswith("$.deepspeed_config: zero_optimization.offload_param.nvme_path: ")
    assert "outside the allowed roots" in problems[0]

    (workspace.configs_dir / "pets" / "ds.json").write_text(json.dumps({"zero_optimization": zero}))
    in_file = _environment(workspace, model_type="full", deepspeed_config="ds.json")
    loaded = load_environment(workspace, in_file, "pets", registry)
    problems = job_guard_problems(workspace, in_file, loaded, registry, environ)
    assert len(problems) == 1 and "offload_param.nvme_path" in problems[0], problems

    zero["offload_param"]["nvme_path"] = "swap"  # relative: inside the environment's folder
    (workspace.configs_dir / "pets" / "ds.json").write_text(json.dumps({"zero_optimization": zero}))
    assert job_guard_problems(workspace, in_file, loaded, registry, environ) == []
