"""The ``ray`` executor: each job a Ray job, submitted through the cluster's Jobs API (``JobSubmissionClient``).

The entrypoint is ``simpletuner --workspace W train --env NAME --run-dir FOLDER`` (the ``ray_command`` option names
the program), run in the workspace, which the cluster's machines reach at the same path as the server (a shared
filesystem, ``ray_shared_dir``); the job's own variables travel in its runtime environment. A run of several
processes starts :mod:`simpletuner.plugins.executors.ray_driver` instead, which places them with a placement group
and gives each the torch.distributed rendezvous. The submission id, chosen before submitting and written into the
job's folder, is the job's reference: a restarted server re-attaches by it. Ray stops a job with SIGTERM, then SIGKILL
after ``RAY_JOB_STOP_WAIT_TIME_S`` (set on the cluster).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import time
from pathlib import Path
from typing import Any

from simpletuner.core.interfaces.executor import (
    FAILED,
    LOST,
    PENDING,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    Executor,
    ExecutorUnavailable,
    JobState,
    Submission,
    SubmitError,
    SubmittedJob,
)
from simpletuner.plugins.executors.shared import shared_dir_problems

#: Written into the job's folder before the job is submitted: its submission id.
SUBMISSION_ID_FILE = "ray-submission-id"
#: Seconds between two fetches of a job's log (Ray hands over the whole log each time).
LOG_EVERY_S = 2.0


def _unreachable(address: str, exc: BaseException) -> ExecutorUnavailable:
    return ExecutorUnavailable(f"cannot reach the Ray cluster at {address}: {exc}; check that the cluster runs and "
                               "that ray_address (or the server's RAY_ADDRESS) names its Jobs API, e.g. "
                               "http://head:8265")


def _missing(exc: RuntimeError) -> bool:
    text = str(exc)
    return "404" in text or "does not exist" in text


class RayExecutor(Executor):
    """Submits jobs to the Ray cluster at ``ray_address`` (else the server's ``RAY_ADDRESS``)."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self._client: Any = None
        self._logs: dict[str, tuple[float, bytes]] = {}

    @property
    def address(self) -> str | None:
        """The cluster's Jobs API address."""
        return self.options.ray_address or os.environ.get("RAY_ADDRESS") or None

    def problems(self, workspace: Path, output_dir: Path) -> list[str]:
        """No address, Ray missing on the server, or folders the cluster cannot share."""
        problems = []
        if not self.address:
            problems.append("the ray executor needs the cluster's address: set ray_address (a privileged option) to "
                            "its Jobs API, e.g. http://head:8265, or start the server with RAY_ADDRESS")
        try:
            import ray.job_submission  # noqa: F401
        except ImportError:
            problems.append("the ray executor needs Ray on the server: pip install 'simpletuner[ray]'")
        return problems + shared_dir_problems("ray_shared_dir", self.options.ray_shared_dir, workspace, output_dir)

    def _connect(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            address = self.address or ""
            try:
                self._client = JobSubmissionClient(address)
            except (ConnectionError, OSError, RuntimeError, ValueError) as exc:
                raise _unreachable(address, exc) from None
        return self._client

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A client call; a connection failure drops the client (the next call connects again)."""
        client = self._connect()
        try:
            return getattr(client, name)(*args, **kwargs)
        except (ConnectionError, OSError) as exc:
            self._client = None
            raise _unreachable(self.address or "", exc) from None

    def entrypoint(self, job: Submission) -> str:
        """The shell command Ray runs: the training command, or the driver that places several processes."""
        command = [self.options.ray_command, *job.arguments]
        resources = job.resources
        if resources.processes > 1:
            command = ["python", "-m", "simpletuner.plugins.executors.ray_driver", "--processes",
                       str(resources.processes), "--gpus-per-process", str(self._gpus(job)), "--cpus-per-process",
                       str(self.options.ray_cpus_per_process), "--", *command]
        return f"cd {shlex.quote(str(job.working_dir))} && exec {shlex.join(command)}"

    def _gpus(self, job: Submission) -> float:
        per_node = job.resources.gpus_per_node
        if per_node is not None:
            return per_node / job.resources.processes_per_node
        return float(self.options.ray_gpus_per_process)

    def submit(self, job: Submission) -> str:
        """Submit the job under a new submission id (written into its folder first)."""
        submission_id = f"simpletuner-{job.job_id}-{secrets.token_hex(4)}"
        job.folder.mkdir(parents=True, exist_ok=True)
        (job.folder / SUBMISSION_ID_FILE).write_text(submission_id)
        runtime_env: dict[str, Any] = json.loads(self.options.ray_runtime_env or "{}")
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **job.environment}
        gpus = self._gpus(job)
        if job.resources.processes > 1:  # the driver reserves the processes' resources itself
            placement: dict[str, Any] = {"entrypoint_num_cpus": 0}
        else:
            placement = {"entrypoint_num_cpus": self.options.ray_cpus_per_process,
                         "entrypoint_num_gpus": gpus or None}
        try:
            return str(self._call("submit_job", entrypoint=self.entrypoint(job), submission_id=submission_id,
                                  runtime_env=runtime_env, metadata={"simpletuner_job": str(job.job_id),
                                                                     "name": job.name}, **placement))
        except RuntimeError as exc:
            raise SubmitError(f"the Ray cluster at {self.address} refused the job: {exc}") from None

    def recover(self, folder: Path) -> str | None:
        """The submission id written before submitting, when the cluster knows it (or cannot be asked now)."""
        try:
            submission_id = (folder / SUBMISSION_ID_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        try:
            self._call("get_job_info", submission_id)
        except RuntimeError as exc:
            return None if _missing(exc) else submission_id
        except ExecutorUnavailable:
            pass
        return submission_id

    def poll(self, job: SubmittedJob) -> JobState:
        """Ray's status of the submission; lost when the cluster no longer knows it."""
        try:
            info = self._call("get_job_info", job.ref)
        except RuntimeError as exc:
            if _missing(exc):
                return JobState(state=LOST, reason=f"the Ray cluster at {self.address} does not know the submission "
                                                    f"{job.ref} (was the cluster restarted?)")
            raise ExecutorUnavailable(
                f"the Ray cluster at {self.address} did not answer about {job.ref}: {exc}") from None
        status = str(getattr(info.status, "value", info.status))
        message = info.message or None
        if status == "PENDING":
            return JobState(state=PENDING, reason=message)
        if status == "RUNNING":
            return JobState(state=RUNNING)
        self._logs.pop(job.ref, None)
        code = info.driver_exit_code
        code, sig = (code, None) if code is None or code >= 0 else (None, -code)
        if status == "SUCCEEDED":
            return JobState(state=SUCCEEDED, exit_code=0)
        if status == "STOPPED":
            return JobState(state=STOPPED, exit_code=code, signal=sig, reason="stopped on the Ray cluster")
        # Ray's message appends the job's last logs: keep its first sentence (the log is the job's own).
        reason = (message or "the Ray job failed").splitlines()[0].split(", last available logs")[0].rstrip(":")
        if info.error_type:
            reason = f"{reason} ({info.error_type}); see the job's log"
        return JobState(state=FAILED, exit_code=code, signal=sig, reason=reason)

    def stop(self, job: SubmittedJob, force: bool = False) -> None:
        """Ask Ray to stop the job (SIGTERM, then SIGKILL after the cluster's wait time)."""
        try:
            self._call("stop_job", job.ref)
        except RuntimeError as exc:
            if not _missing(exc):
                raise ExecutorUnavailable(f"the Ray cluster at {self.address} did not stop {job.ref}: {exc}") from None

    def read_log(self, job: SubmittedJob, offset: int) -> bytes | None:
        """What the job printed from byte ``offset`` on (fetched at most every :data:`LOG_EVERY_S` seconds)."""
        fetched_at, data = self._logs.get(job.ref, (0.0, b""))
        if time.monotonic() - fetched_at >= LOG_EVERY_S:
            try:
                data = str(self._call("get_job_logs", job.ref)).encode("utf-8", errors="replace")
            except RuntimeError:
                return b""
            self._logs[job.ref] = (time.monotonic(), data)
        return data[offset:]
