"""The ``slurm`` executor: each job an ``sbatch`` batch script, followed with ``squeue``/``scontrol``/``sacct`` and
stopped with ``scancel``.

The script is written into the job's folder (``job.sbatch``); its output goes to the job's log there, so the folder
must be on storage the nodes share with the server (``slurm_shared_dir``). A single process runs the training command
itself; several run through ``srun``, one task per process, each given the torch.distributed rendezvous accelerate
reads (``MASTER_ADDR`` = the first node's address, ``MASTER_PORT``, ``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` =
``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID``). The Slurm job id is the job's reference; the script also writes
it into the job's folder as it starts, and ends by writing the command's exit status there, which tells how a job
ended on a cluster without accounting once ``scontrol`` has forgotten it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
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

SCRIPT_FILE = "job.sbatch"
JOB_ID_FILE = "slurm-job-id"
EXIT_FILE = "slurm-exit-code"
COMMAND_TIMEOUT_S = 30.0

_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "RESIZING", "SIGNALING", "STOPPED"}
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
#: Why a job ended, by Slurm's final state (COMPLETED and CANCELLED are handled apart).
_REASONS = {
    "TIMEOUT": "the job reached its time limit (slurm_time_limit, or the partition's)",
    "NODE_FAIL": "a node of the job failed",
    "OUT_OF_MEMORY": "the job ran out of memory on its node",
    "PREEMPTED": "the job was preempted by the cluster's scheduler",
    "BOOT_FAIL": "a node of the job failed to boot",
    "DEADLINE": "the job reached its deadline",
    "FAILED": "the training command failed",
}

#: Run as each task of a multi-process run: the rendezvous from Slurm's variables, then the command.
_TASK = ('export RANK="$SLURM_PROCID" WORLD_SIZE="$SLURM_NTASKS" LOCAL_RANK="$SLURM_LOCALID" '
         'LOCAL_WORLD_SIZE="$SLURM_NTASKS_PER_NODE"; exec "$@"')


def _seconds_to_slurm(seconds: float) -> str:
    minutes = max(1, int(-(-seconds // 60)))
    return str(minutes)


class SlurmExecutor(Executor):
    """Submits jobs with ``sbatch`` to the cluster the server's Slurm commands reach (``SLURM_CONF``)."""

    def __init__(self, options: Any) -> None:
        self.options = options

    def problems(self, workspace: Path, output_dir: Path) -> list[str]:
        """Slurm's commands missing on the server, or folders the nodes cannot share."""
        missing = [name for name in ("sbatch", "squeue", "scontrol", "scancel") if shutil.which(name) is None]
        problems = []
        if missing:
            problems.append(f"the slurm executor needs Slurm's commands on the server ({', '.join(missing)} not "
                            "found): install the cluster's client tools (Debian: slurm-client) and its slurm.conf")
        return problems + shared_dir_problems("slurm_shared_dir", self.options.slurm_shared_dir, workspace,
                                              output_dir)

    # --- the script -------------------------------------------------------------------------------------------
    def script(self, job: Submission) -> str:
        """The batch script of ``job``."""
        options, resources = self.options, job.resources
        gpus = options.slurm_gpus_per_node
        if gpus is None:
            gpus = resources.gpus_per_node if resources.gpus_per_node is not None else resources.processes_per_node
        directives = [f"--job-name={job.name}", f"--output={job.log_file}", "--open-mode=append",
                      f"--chdir={job.working_dir}", f"--nodes={resources.nodes}",
                      f"--ntasks-per-node={resources.processes_per_node}"]
        if gpus:
            directives.append(f"--gpus-per-node={gpus}")
        if options.slurm_cpus_per_task:
            directives.append(f"--cpus-per-task={options.slurm_cpus_per_task}")
        if options.slurm_partition:
            directives.append(f"--partition={options.slurm_partition}")
        if options.slurm_account:
            directives.append(f"--account={options.slurm_account}")
        if options.slurm_time_limit:
            directives.append(f"--time={options.slurm_time_limit}")
        elif resources.time_limit_s:
            directives.append(f"--time={_seconds_to_slurm(resources.time_limit_s)}")
        directives += [line.strip() for line in options.slurm_extra_directives]
        command = shlex.join([options.slurm_command, *job.arguments])
        lines = ["#!/bin/bash", *(f"#SBATCH {shlex.quote(d)}" for d in directives), "",
                 f"echo \"$SLURM_JOB_ID\" > {shlex.quote(str(job.folder / JOB_ID_FILE))}",
                 *(f"export {key}={shlex.quote(value)}" for key, value in sorted(job.environment.items())),
                 f"cd {shlex.quote(str(job.working_dir))}"]
        if resources.processes > 1:
            lines += ['first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
                      'MASTER_ADDR=$(scontrol show node "$first" -o | sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\')',
                      'export MASTER_ADDR="${MASTER_ADDR:-$first}"',
                      f"export MASTER_PORT={int(options.slurm_master_port)}",
                      f"srun --kill-on-bad-exit=1 bash -c {shlex.quote(_TASK)} simpletuner-task {command}"]
        else:
            lines.append(command)
        lines += ["code=$?", f"echo \"$code\" > {shlex.quote(str(job.folder / EXIT_FILE))}", 'exit "$code"', ""]
        return "\n".join(lines)

    # --- Slurm's commands -------------------------------------------------------------------------------------
    @staticmethod
    def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExecutorUnavailable(f"{command[0]} failed: {exc}") from None
        if check and done.returncode != 0 and "Invalid job id" not in done.stderr:
            message = (done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}").splitlines()[-1]
            if re.search(r"(?i)unable to contact|connection refused|timed out|communication", message):
                raise ExecutorUnavailable(f"the Slurm controller cannot be reached: {message}")
        return done

    def submit(self, job: Submission) -> str:
        """Write the batch script into the job's folder and ``sbatch`` it."""
        job.folder.mkdir(parents=True, exist_ok=True)
        path = job.folder / SCRIPT_FILE
        path.write_text(self.script(job))
        done = self._run("sbatch", "--parsable", str(path), check=False)
        job_id = done.stdout.strip().split(";")[0]
        if done.returncode != 0 or not job_id.isdigit():
            raise SubmitError(f"sbatch refused the job: {(done.stderr.strip() or done.stdout.strip())[-500:]}")
        (job.folder / JOB_ID_FILE).write_text(job_id)
        return job_id

    def recover(self, folder: Path) -> str | None:
        """The job id written after submitting (or by the script), or found by the job's name in the queue."""
        try:
            return (folder / JOB_ID_FILE).read_text().strip() or None
        except FileNotFoundError:
            pass
        try:
            script = (folder / SCRIPT_FILE).read_text()
        except FileNotFoundError:
            return None
        name = re.search(r"^#SBATCH --job-name=(\S+)$", script, re.MULTILINE)
        if name is None:
            return None
        found = self._run("squeue", "-h", "-n", name.group(1), "-o", "%i").stdout.split()
        return found[0] if found else None

    def poll(self, job: SubmittedJob) -> JobState:
        """From ``squeue`` while queued or running; then ``scontrol``, ``sacct`` or the script's exit file."""
        queued = self._run("squeue", "-h", "-j", job.ref, "-o", "%T|%r")
        line = queued.stdout.strip().splitlines()[0] if queued.returncode == 0 and queued.stdout.strip() else ""
        if line:
            state, _, reason = line.partition("|")
            if state in _PENDING:
                return JobState(state=PENDING, reason=f"waiting in the Slurm queue ({reason})" if reason else None)
            if state in _RUNNING:
                return JobState(state=RUNNING)
        ended = self._final(job.ref)
        if ended is None:
            return self._from_exit_file(job)
        state, code, sig = ended
        if state == "COMPLETED" and code == 0:
            return JobState(state=SUCCEEDED, exit_code=0)
        if state == "CANCELLED":
            return JobState(state=STOPPED, exit_code=code, signal=sig, reason="cancelled on the Slurm cluster")
        reason = _REASONS.get(state, f"the Slurm job ended {state}")
        if state in ("FAILED", "COMPLETED") and code:
            reason = f"the training command exited with code {code}"
        return JobState(state=FAILED, exit_code=code, signal=sig or None, reason=reason)

    def _final(self, job_id: str) -> tuple[str, int | None, int | None] | None:
        """(state, exit code, signal) of an ended job from ``scontrol`` (kept for MinJobAge) or ``sacct``."""
        shown = self._run("scontrol", "show", "job", "-o", job_id, check=False)
        fields = dict(part.split("=", 1) for part in shown.stdout.split() if "=" in part) if shown.returncode == 0 \
            else {}
        if "JobState" in fields:
            if fields["JobState"] in _RUNNING | _PENDING:
                return None
            return (fields["JobState"], *self._exit(fields.get("ExitCode", "")))
        accounted = self._run("sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode", check=False)
        rows = [row.split("|") for row in accounted.stdout.strip().splitlines() if "|" in row]
        if accounted.returncode == 0 and rows:
            return (rows[0][0].split()[0], *self._exit(rows[0][1]))
        return None

    @staticmethod
    def _exit(text: str) -> tuple[int | None, int | None]:
        code, _, sig = text.partition(":")
        try:
            return int(code), (int(sig) or None) if sig else None
        except ValueError:
            return None, None

    @staticmethod
    def _from_exit_file(job: SubmittedJob) -> JobState:
        try:
            code = int((job.folder / EXIT_FILE).read_text().strip())
        except (FileNotFoundError, ValueError):
            return JobState(state=LOST, reason="Slurm no longer knows the job and it left no exit status (the "
                                               "cluster lost it, or its node failed); see its log")
        if code == 0:
            return JobState(state=SUCCEEDED, exit_code=0)
        return JobState(state=FAILED, exit_code=code, reason=f"the training command exited with code {code}")

    def stop(self, job: SubmittedJob, force: bool = False) -> None:
        """``scancel`` (SIGTERM to every step, SIGKILL after the cluster's KillWait); ``force`` sends SIGKILL."""
        if force:
            self._run("scancel", "--full", "--signal=KILL", job.ref, check=False)
        self._run("scancel", job.ref)
