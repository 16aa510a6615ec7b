"""The ``local`` executor: each job a child process of the server's job supervisor, on the server's own GPUs.

The job runs inside a wrapper (:mod:`simpletuner.plugins.executors.shim`) that leads its process group, records the
exit status in the job's folder and leaves no orphans; its reference is ``"PID START_TICKS"``, which identifies the
wrapper across pid reuse, so a supervisor started after a restart adopts it. Stopping signals the whole process tree
(SIGTERM, then SIGKILL when the server's grace period is over).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from simpletuner.core.interfaces.executor import (
    FAILED,
    LOST,
    RUNNING,
    SUCCEEDED,
    Executor,
    JobState,
    Submission,
    SubmitError,
    SubmittedJob,
)
from simpletuner.plugins.executors.processes import describe_exit, is_running, signal_tree, start_ticks
from simpletuner.plugins.executors.shim import PID_FILE_SUFFIX

#: The wrapper's record of how the command ended, in the job's folder.
STATUS_FILE = "exit.json"
#: Why a job failed when it ended while no supervisor watched it and left no exit status.
LOST_REASON = ("the job's process ended while no supervisor was watching it (the server was down) and left no exit "
               "status; see its log")
CLI_MODULE = "simpletuner.core.cli.main"


def _split(ref: str) -> tuple[int, str | None]:
    pid, _, ticks = ref.partition(" ")
    return int(pid), ticks or None


class LocalExecutor(Executor):
    """Runs jobs as child processes of the calling process (the server's job supervisor), in sessions of their own
    so that they outlive it."""

    def __init__(self, options: Any = None, python: str = sys.executable) -> None:
        self.python = python
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def command(self, job: Submission) -> list[str]:
        """The wrapped training command: ``simpletuner`` in this interpreter, through ``accelerate launch`` when the
        job has launch arguments."""
        train = ["-m", CLI_MODULE, *job.arguments]
        if job.launch_arguments is not None:
            train = [self.python, "-m", "accelerate.commands.launch", *job.launch_arguments, *train]
        else:
            train = [self.python, *train]
        return [self.python, "-m", "simpletuner.plugins.executors.shim", str(job.folder / STATUS_FILE), "--", *train]

    def submit(self, job: Submission) -> str:
        """Start the job's wrapper in a new session, its output appended to the job's log."""
        job.folder.mkdir(parents=True, exist_ok=True)
        try:
            with job.log_file.open("ab") as log:
                process = subprocess.Popen(self.command(job), stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True, cwd=job.working_dir,
                                           env={**os.environ, **job.environment})
        except OSError as exc:
            raise SubmitError(str(exc)) from exc
        ref = f"{process.pid} {start_ticks(process.pid)}"
        self._children[ref] = process
        return ref

    def recover(self, folder: Path) -> str | None:
        """The wrapper written down in the job's folder as it started, if any."""
        try:
            pid, ticks = (folder / STATUS_FILE).with_suffix(PID_FILE_SUFFIX).read_text().split()
            return f"{int(pid)} {ticks}"
        except (FileNotFoundError, ValueError):
            return None

    def poll(self, job: SubmittedJob) -> JobState:
        """Running while the wrapper lives; then its recorded exit status (or the wrapper's own, or lost)."""
        pid, ticks = _split(job.ref)
        child = self._children.get(job.ref)
        ended = child.poll() is not None if child is not None else not is_running(pid, ticks)
        if not ended:
            return JobState(state=RUNNING)
        self._children.pop(job.ref, None)
        code, sig, lost = self._outcome(job.folder, child)
        if lost:
            return JobState(state=LOST, reason=LOST_REASON)
        if code == 0 and sig is None:
            return JobState(state=SUCCEEDED, exit_code=0)
        return JobState(state=FAILED, exit_code=code, signal=sig, reason=describe_exit(code, sig, False))

    @staticmethod
    def _outcome(folder: Path, child: subprocess.Popen[bytes] | None) -> tuple[int | None, int | None, bool]:
        """(exit code, signal, lost): from the wrapper's status file, else from the wrapper's own exit."""
        try:
            status = json.loads((folder / STATUS_FILE).read_text())
            return status.get("returncode"), status.get("signal"), False
        except (FileNotFoundError, ValueError):
            pass
        if child is not None and child.returncode is not None:
            code = child.returncode  # the wrapper itself died (SIGKILL after the grace period)
            return (code, None, False) if code >= 0 else (None, -code, False)
        return None, None, True

    def stop(self, job: SubmittedJob, force: bool = False) -> None:
        """SIGTERM (SIGKILL with ``force``) to the wrapper's group and every process below it."""
        signal_tree(_split(job.ref)[0], signal.SIGKILL if force else signal.SIGTERM)
