"""The executor plugins without a cluster: registration and discovery, config check of the ``executor`` option and
the executors' options, the Slurm batch script and the Ray entrypoint each renders, and the shared-folder rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jobs.conftest import write_env

from simpletuner.core.interfaces.executor import Resources, Submission
from simpletuner.core.options import PRIVILEGED, describe_options
from simpletuner.core.plugins import Registry
from simpletuner.plugins.executors import RayOptions, SlurmOptions
from simpletuner.plugins.executors.ray import RayExecutor
from simpletuner.plugins.executors.shared import shared_dir_problems
from simpletuner.plugins.executors.slurm import SlurmExecutor

pytestmark = pytest.mark.timeout(120)


def test_register_executors_provides_local_ray_and_slurm(run_cli) -> None:  # type: ignore[no-untyped-def]
    executors = Registry().executors()
    assert {"local", "ray", "slurm"} <= set(executors)
    assert executors["local"].local_gpus and not executors["ray"].local_gpus and not executors["slurm"].local_gpus
    privileged = {info.key for spec in executors.values() if spec.options is not None
                  for info in describe_options(spec.options) if info.trust == PRIVILEGED}
    # Whatever says where jobs go or what runs on the cluster is an admin's (or a trusted user's) choice.
    assert {"ray_address", "ray_command", "ray_runtime_env", "ray_shared_dir", "slurm_command",
            "slurm_extra_directives", "slurm_shared_dir"} <= privileged
    result = run_cli("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    listed = {row["name"] for row in json.loads(result.stdout) if row["kind"] == "executor" and row["error"] is None}
    assert {"local", "ray", "slurm"} <= listed


def test_config_check_names_an_unknown_executor_and_bad_executor_options(run_cli, workspace, tiny_flux) -> None:  # type: ignore[no-untyped-def]
    write_env(workspace.root, tiny_flux, "elsewhere", executor="slurn")
    result = run_cli("config", "check", "--env", "elsewhere")
    assert result.returncode == 1
    assert "$.executor: unknown executor 'slurn' (did you mean 'slurm'?); installed: " in result.stderr
    for key, value, message in [
            ("slurm_time_limit", "soon", "expected a Slurm time limit"),
            ("slurm_partition", "gpu; rm -rf /", "expected a Slurm name"),
            ("slurm_extra_directives", ["--qos=high\n--uid=0"], "each entry is one sbatch option"),
            ("ray_runtime_env", "[1]", "expected a JSON object (Ray's runtime_env)")]:
        write_env(workspace.root, tiny_flux, "elsewhere", executor="slurm", **{key: value})
        result = run_cli("config", "check", "--env", "elsewhere")
        assert result.returncode == 1 and f"$.{key}: {message}" in result.stderr, (key, result.stderr)
        assert "Traceback" not in result.stderr

    write_env(workspace.root, tiny_flux, "elsewhere", executor="slurm", slurm_time_limit="1-12:00:00",
              slurm_partition="gpu,debug")
    result = run_cli("config", "check", "--env", "elsewhere")
    assert result.returncode == 0, result.stderr


def _submission(root: Path, nodes: int = 1, per_node: int = 1) -> Submission:
    return Submission(job_id=7, name="simpletuner-7-cats", arguments=["--workspace", str(root), "train", "--env",
                                                                       "cats", "--run-dir", str(root / "run")],
                      environment={"SIMPLETUNER_JOB_ID": "7", "TOKEN_FILE": "/a path/with 'quotes'"},
                      resources=Resources(nodes=nodes, processes_per_node=per_node, time_limit_s=90),
                      working_dir=root, run_dir=root / "run", folder=root / "jobs" / "7")


def test_the_slurm_script_asks_for_the_resources_and_starts_every_process_through_srun(tmp_path: Path) -> None:
    options = SlurmOptions(slurm_partition="gpu", slurm_account="vision", slurm_cpus_per_task=8,
                           slurm_extra_directives=["--qos=high"], slurm_master_port=29600)
    script = SlurmExecutor(options).script(_submission(tmp_path, nodes=2, per_node=4))
    directives = [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == ["--job-name=simpletuner-7-cats", f"--output={tmp_path}/jobs/7/output.log",
                          "--open-mode=append", f"--chdir={tmp_path}", "--nodes=2", "--ntasks-per-node=4",
                          "--gpus-per-node=4", "--cpus-per-task=8", "--partition=gpu", "--account=vision",
                          "--time=2", "--qos=high"]
    assert "export TOKEN_FILE='/a path/with '\"'\"'quotes'\"'\"''" in script
    assert "export MASTER_PORT=29600" in script and "srun --kill-on-bad-exit=1 bash -c" in script
    assert 'RANK="$SLURM_PROCID"' in script and 'WORLD_SIZE="$SLURM_NTASKS"' in script
    assert script.rstrip().endswith('exit "$code"')

    single = SlurmExecutor(SlurmOptions(slurm_gpus_per_node=0, slurm_time_limit="30")).script(_submission(tmp_path))
    assert "srun" not in single and "--gpus-per-node" not in single and "#SBATCH --time=30" in single
    assert f"simpletuner --workspace {tmp_path} train --env cats --run-dir {tmp_path}/run" in single


def test_the_ray_entrypoint_runs_the_command_or_the_driver_that_places_several_processes(tmp_path: Path) -> None:
    executor = RayExecutor(RayOptions(ray_address="http://head:8265", ray_gpus_per_process=1))
    single = executor.entrypoint(_submission(tmp_path))
    assert single == f"cd {tmp_path} && exec simpletuner --workspace {tmp_path} train --env cats --run-dir " \
                     f"{tmp_path}/run"
    several = executor.entrypoint(_submission(tmp_path, nodes=2, per_node=2))
    assert ("-m simpletuner.plugins.executors.ray_driver --processes 4 --gpus-per-process 1.0 --cpus-per-process "
            "1.0 -- simpletuner --workspace") in several


def test_an_executor_without_an_address_or_shared_folders_says_what_to_set(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    workspace, outside = tmp_path / "ws", tmp_path / "elsewhere"
    workspace.mkdir()
    [address] = RayExecutor(RayOptions()).problems(workspace, workspace / "output")
    assert "set ray_address" in address and "RAY_ADDRESS" in address
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert RayExecutor(RayOptions()).problems(workspace, workspace / "output") == []

    [output] = shared_dir_problems("slurm_shared_dir", None, workspace, outside)
    assert "output_dir" in output and "set slurm_shared_dir" in output
    [missing] = shared_dir_problems("slurm_shared_dir", str(tmp_path / "nfs"), workspace, workspace / "output")
    assert "does not exist on the server" in missing
    (tmp_path / "nfs").mkdir()
    problems = shared_dir_problems("slurm_shared_dir", str(tmp_path / "nfs"), workspace, workspace / "output")
    assert len(problems) == 2 and "workspace" in problems[0] and "SIMPLETUNER_WORKSPACE" in problems[0]
    assert shared_dir_problems("slurm_shared_dir", str(tmp_path), workspace, outside) == []


@pytest.mark.parametrize(("executor", "override", "message"), [
    ("slurm", {"gpus_per_node": -1}, "slurm_gpus_per_node: must be at least 0, got -1"),
    ("slurm", {"cpus_per_task": "0"}, "slurm_cpus_per_task: must be at least 1, got 0"),
    ("slurm", {"master_port": 80}, "slurm_master_port: must be at least 1024, got 80"),
    ("ray", {"gpus_per_process": "nan"}, "ray_gpus_per_process: must be a number, got nan"),
    ("slurm", {"partition": "gpu; reboot"}, "slurm_partition: expected a Slurm name"),
])
def test_a_jobs_executor_options_are_held_to_the_options_bounds(executor: str, override: dict[str, object],
                                                                message: str) -> None:
    from types import SimpleNamespace

    from simpletuner.core.errors import ConfigError
    from simpletuner.ui.jobs.placement import choose

    config = SimpleNamespace(core=SimpleNamespace(executor="local"), options_for=lambda spec: spec.options())
    with pytest.raises(ConfigError) as refused:
        choose(Registry(), config, executor, override, frozenset())
    assert any(message in problem for problem in refused.value.problems), refused.value.problems
