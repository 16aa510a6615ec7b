"""The Executor interface: where and how a training job runs.

The server's supervisor hands every admitted job to the executor its environment (or the job's start request)
names: ``local`` runs it as a child process on the server's own GPUs, ``ray`` submits it to a Ray cluster, ``slurm``
to a Slurm cluster. The supervisor keeps what :meth:`Executor.submit` returns (the executor's reference to the job) in
the database, so a restarted server re-attaches to the job with it, asks its state with :meth:`Executor.poll`, stops
it with :meth:`Executor.stop`, and copies its console output with :meth:`Executor.read_log`.

Outputs: the job's run folder and its own folder (``Submission.run_dir`` and ``Submission.folder``) are paths on a
filesystem the server and the machines that run the job both reach at the same path. The job writes its events
(``events.jsonl``), checkpoints, model and images into the run folder, and the server reads them from there, so the
job page, the event stream and the downloads work the same whichever executor ran the job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import attrs

#: Job states an executor reports. ``pending``: waiting for the cluster's scheduler; ``running``; and the ends:
#: ``succeeded`` (exit code 0), ``failed``, ``stopped`` (by :meth:`Executor.stop` or the cluster's operators) and
#: ``lost`` (the executor no longer knows the job and cannot tell how it ended).
PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED, LOST = "pending", "running", "succeeded", "failed", "stopped", "lost"
STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED, LOST)
ENDED_STATES = (SUCCEEDED, FAILED, STOPPED, LOST)


class ExecutorUnavailable(Exception):
    """The executor cannot reach its cluster (address down, command failing) right now; the server keeps the job
    and asks again later. The message says what failed and how to fix it."""


class SubmitError(Exception):
    """The executor refused or failed to submit a job; the message says why (the job is marked failed)."""


@attrs.frozen(kw_only=True)
class Resources:
    """What a job asks of the machines that run it.

    Attributes:
        nodes: machines the job spans.
        processes_per_node: training processes on each machine (one per GPU); more than one process in all is a
            distributed run whose processes meet through torch.distributed (``MASTER_ADDR``, ``RANK``, ...).
        gpus_per_node: GPUs each machine needs; None leaves it to the executor's options (one per process unless
            they say otherwise); 0 runs on CPUs (gloo).
        time_limit_s: wall-clock limit after which the cluster ends the job; None for none.
    """

    nodes: int = 1
    processes_per_node: int = 1
    gpus_per_node: int | None = None
    time_limit_s: float | None = None

    @property
    def processes(self) -> int:
        """Training processes in all."""
        return self.nodes * self.processes_per_node


@attrs.frozen(kw_only=True)
class Submission:
    """One job handed to an executor.

    Attributes:
        job_id: the server's id of the job.
        name: a short label for the cluster's job list (``simpletuner-<id>-<environment>``).
        arguments: the arguments of the ``simpletuner`` command each training process runs (``--workspace W train
            --env NAME --run-dir FOLDER``); the executor puts the program in front (an interpreter it knows, or its
            ``simpletuner`` command option).
        environment: variables every training process needs (workspace, job id, the server's path and approval
            checks, token files); the executor adds them to the environment of the machine that runs the process.
        resources: machines, processes, GPUs and time (see :class:`Resources`).
        working_dir: the folder the command runs in (the workspace).
        run_dir: the run folder, made by the server before submitting: everything the job makes goes there.
        folder: the job's own folder for the executor's files: the console log (``output.log``), scripts, the exit
            status. Both folders are on storage the server reads.
        launch_arguments: ``accelerate launch`` options for an executor that starts all processes of a run on one
            machine itself (``local``); None for a single process. Executors that place processes themselves ignore
            them and use :attr:`resources`.
    """

    job_id: int
    name: str
    arguments: tuple[str, ...] = attrs.field(converter=tuple)
    environment: Mapping[str, str] = attrs.field(factory=dict)
    resources: Resources = attrs.field(factory=Resources)
    working_dir: Path
    run_dir: Path
    folder: Path
    launch_arguments: tuple[str, ...] | None = None

    @property
    def log_file(self) -> Path:
        """Where the job's console output goes (an executor that cannot write it there returns it from
        :meth:`Executor.read_log` and the server writes it)."""
        return self.folder / "output.log"


@attrs.frozen(kw_only=True)
class SubmittedJob:
    """What the server keeps of a submitted job: the executor's reference and the job's own folder."""

    ref: str
    folder: Path


@attrs.frozen(kw_only=True)
class JobState:
    """A job's state as its executor sees it, and for an ended job how it ended.

    Attributes:
        state: one of :data:`STATES`.
        exit_code: the training command's exit code, when known.
        signal: the signal that ended it, when known.
        reason: why it ended when it did not succeed (``"the job reached its time limit"``), or why it waits.
    """

    state: str = attrs.field(validator=attrs.validators.in_(STATES))
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None

    @property
    def ended(self) -> bool:
        """Whether the job is over."""
        return self.state in ENDED_STATES


class Executor(ABC):
    """Runs training jobs: submits them, reports their state, copies their log and stops them.

    A factory builds one from its options (its spec's options class, filled from the environment and the job's
    start request); the server calls it from one process, its job supervisor. Calls that need the cluster raise
    :class:`ExecutorUnavailable` while it cannot be reached.

    Example: an executor that runs each job as a child process of the server (without the process-group handling,
    adoption and stop grace the built-in ``local`` executor has)::

        >>> import subprocess, sys, tempfile
        >>> class ChildProcesses(Executor):
        ...     def __init__(self, options=None): self.children = {}
        ...     def submit(self, job):
        ...         command = [sys.executable, "-c", "print('trained')", *job.arguments]
        ...         with job.log_file.open("wb") as log:
        ...             child = subprocess.Popen(command, stdout=log, cwd=job.working_dir)
        ...         self.children[str(child.pid)] = child
        ...         return str(child.pid)
        ...     def poll(self, job):
        ...         code = self.children[job.ref].poll()
        ...         if code is None:
        ...             return JobState(state=RUNNING)
        ...         return JobState(state=SUCCEEDED if code == 0 else FAILED, exit_code=code)
        ...     def stop(self, job, force=False):
        ...         (self.children[job.ref].kill if force else self.children[job.ref].terminate)()
        >>> root = Path(tempfile.mkdtemp())
        >>> job = Submission(job_id=1, name="simpletuner-1-demo", arguments=["train", "--env", "demo"],
        ...                  working_dir=root, run_dir=root / "run", folder=root)
        >>> executor = ChildProcesses()
        >>> submitted = SubmittedJob(ref=executor.submit(job), folder=job.folder)
        >>> executor.children[submitted.ref].wait()
        0
        >>> executor.poll(submitted)
        JobState(state='succeeded', exit_code=0, signal=None, reason=None)
        >>> job.log_file.read_text()
        'trained\\n'
    """

    def problems(self, workspace: Path, output_dir: Path) -> list[str]:
        """What keeps this executor from running a job of the workspace ``workspace`` writing under
        ``output_dir``, one message with its fix per problem (a missing address, a folder the cluster cannot
        reach); checked before a job is queued and again before it is submitted. None by default."""
        return []

    @abstractmethod
    def submit(self, job: Submission) -> str:
        """Start (or queue on the cluster) ``job``; returns the executor's reference to it (a process id, a Ray
        submission id, a Slurm job id). Raises :class:`SubmitError` when the job cannot be submitted."""

    def recover(self, folder: Path) -> str | None:
        """The reference of a job submitted from ``folder`` whose reference the server did not record (it stopped
        between submitting and recording), or None. None by default."""
        return None

    @abstractmethod
    def poll(self, job: SubmittedJob) -> JobState:
        """The job's state now."""

    @abstractmethod
    def stop(self, job: SubmittedJob, force: bool = False) -> None:
        """Ask the job to stop (SIGTERM or the cluster's cancel); ``force`` ends it at once (SIGKILL). The server
        calls it with ``force`` when the job outlives the stop grace period."""

    def read_log(self, job: SubmittedJob, offset: int) -> bytes | None:
        """The job's console output from byte ``offset`` on (what the server appends to the job's log), or None
        when the executor writes ``Submission.log_file`` itself. None by default."""
        return None
