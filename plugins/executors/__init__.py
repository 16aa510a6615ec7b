"""Built-in executors: ``local`` (the server's own supervisor), ``ray`` (a Ray cluster's Jobs API) and ``slurm``
(``sbatch`` on a Slurm cluster).

This module is the entry point; it declares the executors' options and imports nothing heavy (Ray is imported by
the ``ray`` executor when it is first used).
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from simpletuner.core.hookspecs import RegisterExecutor, hookimpl
from simpletuner.core.options import PRIVILEGED, option
from simpletuner.core.specs import ExecutorSpec, lazy

SECTION = "environment"

_SHARED_HELP = ("A folder the server and the cluster's machines reach at the same path (a shared filesystem such as "
                "NFS): the workspace and the environment's output folder must lie inside it. The workspace if unset.")


@attrs.define(kw_only=True)
class RayOptions:
    """Where and how the ``ray`` executor submits jobs."""

    ray_address: str | None = option(
        None, help="Address of the Ray cluster's Jobs API (its dashboard, e.g. http://head:8265); the server's "
        "RAY_ADDRESS if unset.", section=SECTION, trust=PRIVILEGED)
    ray_command: str = option(
        "simpletuner", help="The simpletuner command on the cluster's machines (on their PATH, or an absolute path).",
        section=SECTION, trust=PRIVILEGED)
    ray_shared_dir: str | None = option(None, help=_SHARED_HELP, section=SECTION, trust=PRIVILEGED)
    ray_gpus_per_process: float = option(
        1.0, help="GPUs each training process reserves on the cluster; 0 trains on CPUs.", section=SECTION,
        minimum=0)
    ray_cpus_per_process: float = option(1.0, help="CPUs each training process reserves on the cluster.",
                                         section=SECTION, minimum=0)
    ray_runtime_env: str | None = option(
        None, help="Ray runtime environment of the job as JSON (pip packages, a working_dir to upload, environment "
        "variables); the job's own variables are added to it.", section=SECTION, trust=PRIVILEGED)

    @ray_runtime_env.validator
    def _check_runtime_env(self, attribute: Any, value: str | None) -> None:
        if value is None:
            return
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"$.{attribute.name}: expected a JSON object (Ray's runtime_env): {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"$.{attribute.name}: expected a JSON object (Ray's runtime_env), got "
                             f"{type(parsed).__name__}")


_SLURM_NAME = re.compile(r"^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$")
_SLURM_TIME = re.compile(r"^(\d+|\d+:\d{2}(:\d{2})?|\d+-\d+(:\d{2}(:\d{2})?)?)$")


@attrs.define(kw_only=True)
class SlurmOptions:
    """What the ``slurm`` executor asks ``sbatch`` for."""

    slurm_partition: str | None = option(None, help="Partition to submit to; the cluster's default if unset.",
                                         section=SECTION)
    slurm_account: str | None = option(None, help="Account the job is charged to; your default if unset.",
                                       section=SECTION)
    slurm_gpus_per_node: int | None = option(
        None, help="GPUs per node; one per training process if unset, 0 to train on CPUs.", section=SECTION,
        minimum=0)
    slurm_cpus_per_task: int | None = option(None, help="CPUs per training process.", section=SECTION, minimum=1)
    slurm_time_limit: str | None = option(
        None, help="Time limit (Slurm's format: minutes, HH:MM:SS or D-HH:MM:SS); the partition's if unset.",
        section=SECTION)
    slurm_master_port: int = option(29500, help="Port of the first process of a multi-process run (rendezvous).",
                                    section=SECTION, minimum=1024, maximum=65535)
    slurm_extra_directives: list[str] = option(
        factory=list, help="More sbatch options, one per entry (e.g. '--qos=high', '--constraint=a100').",
        section=SECTION, trust=PRIVILEGED)
    slurm_command: str = option(
        "simpletuner", help="The simpletuner command on the cluster's nodes (on their PATH, or an absolute path).",
        section=SECTION, trust=PRIVILEGED)
    slurm_shared_dir: str | None = option(None, help=_SHARED_HELP, section=SECTION, trust=PRIVILEGED)

    @slurm_partition.validator
    @slurm_account.validator
    def _check_name(self, attribute: Any, value: str | None) -> None:
        if value is not None and not _SLURM_NAME.match(value):
            raise ValueError(f"$.{attribute.name}: expected a Slurm name (letters, digits, '_', '-', '.'; several "
                             f"partitions separated by commas), got {value!r}")

    @slurm_time_limit.validator
    def _check_time(self, attribute: Any, value: str | None) -> None:
        if value is not None and not _SLURM_TIME.match(value):
            raise ValueError(f"$.{attribute.name}: expected a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH or "
                             f"D-HH:MM:SS), got {value!r}")

    @slurm_extra_directives.validator
    def _check_directives(self, attribute: Any, value: list[str]) -> None:
        for line in value:
            if "\n" in line or "\r" in line or not line.strip().startswith("--"):
                raise ValueError(f"$.{attribute.name}: each entry is one sbatch option such as '--qos=high' (no "
                                 f"line breaks), got {line!r}")


@hookimpl
def register_executors(register: RegisterExecutor) -> None:
    """Register the local supervisor, Ray and Slurm."""
    register(ExecutorSpec(
        name="local", title="This server",
        description="A child process of the server's job supervisor, on the server's own GPUs (one job per GPU set).",
        local_gpus=True, factory=lazy("simpletuner.plugins.executors.local:LocalExecutor")))
    register(ExecutorSpec(
        name="ray", title="Ray cluster",
        description="A Ray job submitted through the cluster's Jobs API; Ray places its processes.",
        options=RayOptions, factory=lazy("simpletuner.plugins.executors.ray:RayExecutor")))
    register(ExecutorSpec(
        name="slurm", title="Slurm cluster",
        description="An sbatch job on a Slurm cluster; multi-process runs start through srun.",
        options=SlurmOptions, factory=lazy("simpletuner.plugins.executors.slurm:SlurmExecutor")))
