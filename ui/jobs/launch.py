"""What a job's executor is given: the training command's arguments, its environment variables and its folder in
the workspace."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from simpletuner.core.events import EVENTS_FILE
from simpletuner.core.plugins import Registry
from simpletuner.core.workspace import Workspace
from simpletuner.ui.jobs.guard import guard_environ
from simpletuner.ui.jobs.live_log import last_state
from simpletuner.ui.jobs.models import TRY, Job
from simpletuner.ui.jobs.queue import JobRequest
from simpletuner.ui.workflow.publisher_logins import token_files

JOBS_DIR = "jobs"
LOG_FILE = "output.log"


def job_dir(workspace: Workspace, job_id: int) -> Path:
    """The job's own folder: its log, its exit status and its wrapper's pid."""
    return workspace.root / JOBS_DIR / str(job_id)


def run_folder(job: Job) -> Path | None:
    """The folder holding the files the job made: its run folder; for a job that ran before run folders existed,
    the output folder itself; None for a job that never started."""
    if job.run_dir is not None:
        return Path(job.run_dir)
    return Path(job.output_dir) if job.pid is not None else None


def events_path(job: Job) -> Path:
    """The run's event stream (in its run folder once the job is launched)."""
    return Path(job.run_dir or job.output_dir) / EVENTS_FILE


TRY_REQUEST_FILE = "try-request.json"


def train_arguments(job: Job, workspace: Workspace) -> list[str]:
    """The ``simpletuner`` arguments of a job: ``--workspace W train --env NAME --run-dir FOLDER``, or for a try
    job ``--workspace W try --env NAME --run-dir TRAINED_RUN --request FILE --out FOLDER`` (its request is written
    into the job's folder when it is launched)."""
    if job.kind == TRY:
        assert job.run_dir is not None and job.task is not None
        return ["--workspace", str(workspace.root), "try", "--env", job.environment, "--run-dir",
                job.task["run_dir"], "--request", str(job_dir(workspace, job.id) / TRY_REQUEST_FILE),
                "--out", job.run_dir]
    return ["--workspace", str(workspace.root), "train", "--env", job.environment,
            *(["--run-dir", job.run_dir] if job.run_dir is not None else [])]


def job_environment(job: Job, workspace: Workspace, base: dict[str, str] | None = None,
                    registry: Registry | None = None) -> dict[str, str]:
    """Environment variables of the job: the server's, plus the workspace, the job id, its GPUs, the checks the
    training process repeats, and the owner's token files of publishers that publish as each user (when they
    stored one).

    A single-process job sees only its GPUs through ``CUDA_VISIBLE_DEVICES``; ``accelerate launch`` sets that
    itself from ``--gpu_ids``.
    """
    env = dict(os.environ if base is None else base)
    env.update(SIMPLETUNER_WORKSPACE=str(workspace.root), SIMPLETUNER_JOB_ID=str(job.id), PYTHONUNBUFFERED="1")
    if job.launcher_args is None and job.gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(job.gpu_ids)
    if job.owner_id is not None:  # a user's job checks paths and approvals again as it starts
        env.update(guard_environ(workspace, job.environment))
    if job.owner_id is not None:  # the owner's publisher logins: they publish as themselves
        env.update(token_files(workspace, registry or Registry(), job.owner_id))
    return env


def tail_lines(path: Path, count: int = 40, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``count`` lines of a text file (empty when it does not exist)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return []
    lines = [last_state(line) for line in data.decode("utf-8", errors="replace").split("\n")]
    return [line for line in lines if line.strip()][-count:]


def job_request(workspace: Workspace, registry: Any, environment: str, owner_id: int | None,
                owner_name: str | None, executor: str | None = None,
                executor_options: Mapping[str, Any] | None = None,
                permissions: frozenset[str] = frozenset()) -> JobRequest:
    """Load and check an environment and resolve what its job needs: output folder, executor and its options, GPU
    set and launcher options (``local``) or nodes and processes (a cluster's executor).

    ``executor`` and ``executor_options`` override the environment's for this job; privileged options need
    ``config.trusted`` among ``permissions`` (see :mod:`simpletuner.ui.jobs.placement`).

    Raises :class:`~simpletuner.core.errors.ConfigError` listing every problem, or
    :class:`~simpletuner.core.errors.WorkspaceError` for an unknown or malformed environment name.
    """
    from simpletuner.core.config import load_environment
    from simpletuner.core.distributed import gpu_set, launch_arguments, needs_launcher
    from simpletuner.core.environments import EnvironmentStore, validate_environment_name
    from simpletuner.core.errors import ConfigError
    from simpletuner.ui.jobs.placement import LOCAL, build_options, choose, resources_of

    validate_environment_name(environment)
    loaded = load_environment(workspace, EnvironmentStore(workspace.configs_dir), environment, registry)
    core = loaded.config.core
    output_dir = workspace.resolve(core.output_dir)
    placement = choose(registry, loaded.config, executor, executor_options, permissions)
    problems = placement.spec.build(build_options(placement.spec, placement.options)).problems(workspace.root,
                                                                                              output_dir)
    if problems:
        raise ConfigError([f"$.executor: {problem}" for problem in problems])
    local = placement.spec.local_gpus
    gpus = gpu_set(core) if local else None
    return JobRequest(environment=environment, output_dir=str(output_dir),
                      gpu_ids=tuple(sorted(gpus, key=lambda g: (len(g), g))) if gpus is not None else None,
                      launcher_args=tuple(launch_arguments(core)) if local and needs_launcher(core) else None,
                      owner_id=owner_id, owner_name=owner_name,
                      executor=placement.spec.name if placement.spec.name != LOCAL else None,
                      executor_options=dict(placement.options) or None,
                      resources=None if local else attrs.asdict(resources_of(core)), cluster=not local)
