"""The supervisor: one process per server that launches jobs, watches them, stops them and records how they end.

``simpletuner server`` starts it before gunicorn (see :mod:`simpletuner.ui.jobs.service`), so it lives outside the
request workers and there is exactly one per server however many workers run. Workers and the supervisor share
nothing but the database: workers write requests (new jobs, stop requests, queue order), the supervisor acts on
them and writes what happened. Jobs run in their own sessions and outlive the supervisor; a new supervisor adopts
those still running and marks the others failed, so no job is ever left "running" without a live process.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import attrs
import peewee

from simpletuner.core.plugins import Registry
from simpletuner.core.training.run_folders import create_run_folder
from simpletuner.core.workspace import Workspace
from simpletuner.ui.jobs import ingest
from simpletuner.ui.jobs.launch import (
    LOG_FILE,
    STATUS_FILE,
    events_path,
    job_dir,
    job_environment,
    tail_lines,
    wrapped_command,
)
from simpletuner.ui.jobs.models import ACTIVE, COMPLETED, FAILED, RUNNING, STOPPED, STOPPING, Job
from simpletuner.ui.jobs.processes import describe_exit, is_running, signal_tree, start_ticks
from simpletuner.ui.jobs.queue import admit_ready, finish_unlaunched, record_event
from simpletuner.ui.jobs.retention import APPLY_EVERY_S, apply_retention
from simpletuner.ui.jobs.shim import PID_FILE_SUFFIX

logger = logging.getLogger("simpletuner.jobs")

LOCK_FILE = "supervisor.lock"
LOST = ("the job's process ended while no supervisor was watching it (the server was down) and left no exit "
        "status; see its log")


@attrs.define
class Handle:
    """A job process this supervisor watches: launched by it (``process``) or adopted after a restart."""

    job_id: int
    pid: int
    ticks: str | None
    process: subprocess.Popen[bytes] | None = None
    killed: bool = False


@attrs.define
class Supervisor:
    """Launches admitted jobs, streams their events into the database, enforces stops and records exits."""

    database: peewee.Database
    workspace: Workspace
    grace_s: float = 30.0
    poll_s: float = 0.05
    db_every_s: float = 0.25
    python: str = sys.executable
    #: The installed plugins (publishers that hand each owner's token to their jobs), loaded once.
    registry: Registry = attrs.field(factory=Registry)
    handles: dict[int, Handle] = attrs.field(factory=dict)
    _stopping: bool = False

    # --- start-up ---------------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Adopt every active job whose process still runs; record the end of every other one."""
        for job in Job.select().where(Job.status.in_(ACTIVE)):
            self._claim(job)

    def _claim(self, job: Job) -> None:
        """Take charge of an active job this supervisor does not watch yet."""
        pid, ticks = job.pid, job.process_start
        if pid is None:
            pid, ticks = self._wrapper_pid(job.id)
            if pid is None:
                if job.status == STOPPING:
                    finish_unlaunched(job.id, time.time())
                return  # admitted, never launched: launched on the next pass
            Job.update(pid=pid, process_start=ticks).where(Job.id == job.id).execute()
        handle = Handle(job.id, pid, ticks)
        if is_running(pid, ticks):
            logger.info("adopted job %s (pid %s)", job.id, pid)
            record_event(job.id, "job_adopted", time.time(), pid=pid)
            self.handles[job.id] = handle
        else:
            self._finish(handle)

    def _wrapper_pid(self, job_id: int) -> tuple[int | None, str | None]:
        path = (job_dir(self.workspace, job_id) / STATUS_FILE).with_suffix(PID_FILE_SUFFIX)
        try:
            pid, ticks = path.read_text().split()
            return int(pid), ticks
        except (FileNotFoundError, ValueError):
            return None, None

    # --- launching --------------------------------------------------------------------------------------------
    def launch(self, job: Job) -> None:
        """Make an admitted job's run folder (recorded before its process starts, so its files can be found
        whatever happens next), then start its wrapper in a new session, its output going to the job's log."""
        folder = job_dir(self.workspace, job.id)
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        try:
            if job.run_dir is None:
                job.run_dir = str(create_run_folder(Path(job.output_dir), job.environment, job_id=job.id, now=now))
                Job.update(run_dir=job.run_dir).where(Job.id == job.id).execute()
            path = events_path(job)
            offset = path.stat().st_size if path.exists() else 0
            env = job_environment(job, self.workspace, registry=self.registry)
            with (folder / LOG_FILE).open("ab") as log:
                process = subprocess.Popen(wrapped_command(job, self.workspace, self.python), stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                           cwd=self.workspace.root, env=env)
        except OSError as exc:
            Job.update(status=FAILED, phase="failed", ended_at=now, error=f"could not start the job: {exc}").where(
                Job.id == job.id).execute()
            record_event(job.id, "job_finished", now, status=FAILED, error=str(exc))
            return
        ticks = start_ticks(process.pid)
        self.handles[job.id] = Handle(job.id, process.pid, ticks, process)
        # started_at stays the admission time, so jobs admitted one after the other keep that order even when
        # their processes happen to launch the other way round.
        Job.update(pid=process.pid, process_start=ticks, phase="starting", events_offset=offset).where(
            Job.id == job.id).execute()
        record_event(job.id, "job_started", now, pid=process.pid, environment=job.environment, run_dir=job.run_dir)
        record_event(job.id, "phase", now, phase="starting")
        logger.info("started job %s (%s) as pid %s", job.id, job.environment, process.pid)

    # --- watching ---------------------------------------------------------------------------------------------
    def _ended(self, handle: Handle) -> bool:
        if handle.process is not None:
            return handle.process.poll() is not None
        return not is_running(handle.pid, handle.ticks)

    def ingest(self, job_id: int) -> None:
        """Store the events the job's run wrote since the last pass."""
        job = Job.get_or_none(Job.id == job_id)
        if job is None:
            return
        while True:
            records, offset = ingest.read_new_lines(events_path(job), job.events_offset)
            if offset == job.events_offset:
                return
            with self.database.atomic():
                ingest.store(job, records, offset, time.time())
            job.events_offset = offset

    def _outcome(self, handle: Handle) -> tuple[int | None, int | None, bool]:
        """(exit code, signal, lost) of an ended job, from the wrapper's status file or its own exit."""
        try:
            status = json.loads((job_dir(self.workspace, handle.job_id) / STATUS_FILE).read_text())
            return status.get("returncode"), status.get("signal"), False
        except (FileNotFoundError, ValueError):
            pass
        if handle.process is not None and handle.process.returncode is not None:
            code = handle.process.returncode  # the wrapper itself died (SIGKILL after the grace period)
            return (code, None, False) if code >= 0 else (None, -code, False)
        return None, None, True

    def _finish(self, handle: Handle) -> None:
        """Record the end of a job: status, exit code, signal, explanation and the last lines of its log."""
        self.ingest(handle.job_id)
        job = Job.get_by_id(handle.job_id)
        code, sig, lost = self._outcome(handle)
        stop_requested = job.stop_requested_at is not None
        if code == 0 and sig is None:
            status, error = COMPLETED, None
        elif stop_requested:
            status = STOPPED
            error = f"stopped by {job.stop_requested_by or 'the server'}" + (
                f" (killed after the {self.grace_s:g} s grace period)" if handle.killed else "")
        else:
            status = FAILED
            error = LOST if lost else describe_exit(code, sig, False)
            failure = self._run_failure(job.id)
            if failure and sig is None:
                error = f"{failure} ({error})"
        now = time.time()
        log_tail = tail_lines(job_dir(self.workspace, job.id) / LOG_FILE)
        Job.update(status=status, phase=status, ended_at=now, exit_code=code, exit_signal=sig, error=error,
                   log_tail=log_tail, eta_s=None if status != COMPLETED else 0.0).where(Job.id == job.id).execute()
        record_event(job.id, "job_finished", now, status=status, exit_code=code, signal=sig, error=error,
                     output=job.output if status == COMPLETED else None)
        self.handles.pop(handle.job_id, None)
        logger.info("job %s %s (code %s, signal %s)", job.id, status, code, sig)

    @staticmethod
    def _run_failure(job_id: int) -> str | None:
        from simpletuner.ui.jobs.models import JobEvent

        row = (JobEvent.select().where((JobEvent.job == job_id) & (JobEvent.event == "failed"))
               .order_by(JobEvent.id.desc()).first())
        if row is None:
            return None
        return f"{row.data.get('error_type', 'Error')}: {row.data.get('error', '')}"

    # --- requests from workers -----------------------------------------------------------------------------------
    def apply_requests(self) -> None:
        """Signal jobs asked to stop, admit waiting jobs whose GPUs are free, launch admitted ones."""
        now = time.time()
        for job in Job.select().where(Job.status.in_(ACTIVE)):
            handle = self.handles.get(job.id)
            if handle is None:
                self._claim(job)
                handle = self.handles.get(job.id)
            if job.status != STOPPING or handle is None:
                continue
            if job.term_sent_at is None:
                signal_tree(handle.pid, signal.SIGTERM)
                Job.update(term_sent_at=now).where(Job.id == job.id).execute()
                logger.info("sent SIGTERM to job %s", job.id)
            elif now - job.term_sent_at >= self.grace_s and not handle.killed:
                signal_tree(handle.pid, signal.SIGKILL)
                handle.killed = True
                logger.warning("job %s outlived the %g s grace period: sent SIGKILL", job.id, self.grace_s)
        admit_ready(self.database, now)
        for job in Job.select().where((Job.status == RUNNING) & Job.pid.is_null()):
            if job.id not in self.handles:
                self.launch(job)

    # --- the loop ---------------------------------------------------------------------------------------------
    def step(self) -> None:
        """One fast pass: events of every watched job, and the end of those that ended."""
        for handle in list(self.handles.values()):
            ended = self._ended(handle)
            if ended:
                self._finish(handle)
            else:
                self.ingest(handle.job_id)

    def run(self, parent_pid: int | None = None, ready: IO[str] | None = None) -> None:
        """Reconcile, report readiness, then supervise until SIGTERM/SIGINT or until the server goes away."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_exit)
        self.database.connect(reuse_if_open=True)
        self.reconcile()
        self.apply_requests()
        if ready is not None:
            ready.write("ready\n")
            ready.flush()
        next_db = next_retention = 0.0
        while not self._stopping:
            if parent_pid is not None and os.getppid() != parent_pid:
                logger.info("the server exited; the supervisor stops (running jobs go on)")
                break
            try:
                self.step()
                if time.monotonic() >= next_db:
                    self.apply_requests()
                    next_db = time.monotonic() + self.db_every_s
                if time.monotonic() >= next_retention:
                    removed = apply_retention(self.database, time.time())
                    if any(removed.values()):
                        logger.info("retention removed %s", removed)
                    next_retention = time.monotonic() + APPLY_EVERY_S
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                logger.error("database error (retrying): %s", exc)
                self.database.close()  # the next query reconnects, or fails into this branch again while it is down
                time.sleep(1.0)
            time.sleep(self.poll_s)
        self.database.close()

    def _request_exit(self, *_: Any) -> None:
        self._stopping = True


def acquire_lock(workspace: Workspace) -> int:
    """Hold the workspace's supervisor lock for the life of this process; SystemExit naming the holder if taken."""
    folder = workspace.root / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        raise SystemExit(f"another SimpleTuner server (pid {holder or 'unknown'}) already runs the jobs of the "
                         f"workspace {workspace.root}; stop it first or use another workspace") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getppid()).encode(), 0)
    return fd


def main(argv: list[str] | None = None) -> int:
    """``python -m simpletuner.ui.jobs.supervisor --workspace PATH [--grace S]`` (database URL from
    ``SIMPLETUNER_DATABASE_URL``, so no password shows in the process list). Prints ``ready`` once reconciled."""
    import argparse

    from simpletuner.ui.db.connection import open_database
    from simpletuner.ui.db.models import bind_models
    from simpletuner.ui.jobs.models import bind_job_models
    from simpletuner.ui.workflow.models import bind_workflow_models

    parser = argparse.ArgumentParser(prog="simpletuner-supervisor")
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--grace", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    workspace = Workspace(args.workspace)
    acquire_lock(workspace)
    database = open_database(os.environ.get("SIMPLETUNER_DATABASE_URL") or None, workspace.root)
    bind_models(database)
    bind_job_models(database)
    bind_workflow_models(database)
    supervisor = Supervisor(database, workspace, grace_s=args.grace)
    supervisor.run(parent_pid=os.getppid(), ready=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
