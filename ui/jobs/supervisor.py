"""The supervisor: one process per server that launches jobs, watches them, stops them and records how they end.

``simpletuner server`` starts it before gunicorn (see :mod:`simpletuner.ui.jobs.service`), so it lives outside the
request workers and there is exactly one per server however many workers run. Workers and the supervisor share
nothing but the database: workers write requests (new jobs, stop requests, queue order), the supervisor acts on
them and writes what happened. Each job runs where its executor puts it (:mod:`simpletuner.core.interfaces.executor`):
a process of its own session on this machine (``local``), or a job on a Ray or Slurm cluster. Jobs outlive the
supervisor; a new supervisor re-attaches to those still running through the executor's reference to them and marks
the others ended, so no job is ever left "running" without a live process or cluster job behind it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

import attrs
import peewee

from simpletuner.core.errors import ConfigError, UnknownPluginError
from simpletuner.core.interfaces.executor import (
    STOPPED as EXECUTOR_STOPPED,
)
from simpletuner.core.interfaces.executor import (
    SUCCEEDED,
    Executor,
    ExecutorUnavailable,
    JobState,
    Resources,
    Submission,
    SubmitError,
    SubmittedJob,
)
from simpletuner.core.plugins import Registry
from simpletuner.core.training.run_folders import create_run_folder
from simpletuner.core.trying import new_try_folder
from simpletuner.core.workspace import Workspace
from simpletuner.plugins.executors.local import LocalExecutor
from simpletuner.plugins.executors.processes import describe_exit
from simpletuner.ui.jobs import ingest
from simpletuner.ui.jobs.launch import (
    LOG_FILE,
    TRY_REQUEST_FILE,
    events_path,
    job_dir,
    job_environment,
    tail_lines,
    train_arguments,
)
from simpletuner.ui.jobs.live_log import LiveLog
from simpletuner.ui.jobs.models import ACTIVE, COMPLETED, FAILED, RUNNING, STOPPED, STOPPING, TRY, Job
from simpletuner.ui.jobs.placement import LOCAL, build_executor
from simpletuner.ui.jobs.queue import admit_ready, finish_unlaunched, record_event
from simpletuner.ui.jobs.retention import APPLY_EVERY_S, apply_retention

logger = logging.getLogger("simpletuner.jobs")

LOCK_FILE = "supervisor.lock"
#: Seconds between two questions to a cluster about one job (local jobs are checked every pass).
CLUSTER_POLL_S = 1.0
#: Seconds between two attempts to reach a cluster that did not answer.
UNREACHABLE_RETRY_S = 5.0


@attrs.define
class Handle:
    """A job this supervisor follows: submitted by it, or adopted after a restart."""

    job_id: int
    submitted: SubmittedJob
    executor: Executor
    local: bool
    killed: bool = False
    next_poll: float = 0.0
    state: str | None = None
    unreachable: str | None = None
    log_offset: int = 0
    #: The live view of the job's log (``log`` events).
    live: LiveLog | None = None

    @property
    def pid(self) -> int | None:
        """The wrapper process of a local job."""
        return int(self.submitted.ref.split()[0]) if self.local else None


@attrs.define
class Supervisor:
    """Hands admitted jobs to their executors, streams their events into the database, enforces stops and records
    how jobs end."""

    database: peewee.Database
    workspace: Workspace
    grace_s: float = 30.0
    poll_s: float = 0.05
    db_every_s: float = 0.25
    python: str = sys.executable
    cluster_poll_s: float = CLUSTER_POLL_S
    #: The installed plugins (executors, and publishers that hand each owner's token to their jobs), loaded once.
    registry: Registry = attrs.field(factory=Registry)
    handles: dict[int, Handle] = attrs.field(factory=dict)
    _executors: dict[str, Executor] = attrs.field(factory=dict)
    _stopping: bool = False

    # --- executors --------------------------------------------------------------------------------------------
    def _executor(self, job: Job) -> Executor:
        """The job's executor (one per executor and options, kept: the local one remembers its children)."""
        key = json.dumps([job.executor or LOCAL, job.executor_options or {}], sort_keys=True)
        executor = self._executors.get(key)
        if executor is None:
            executor = build_executor(self.registry, job.executor, job.executor_options)
            if isinstance(executor, LocalExecutor):
                executor.python = self.python
            self._executors[key] = executor
        return executor

    def _handle(self, job: Job, ref: str, executor: Executor) -> Handle:
        log = job_dir(self.workspace, job.id) / LOG_FILE
        return Handle(job.id, SubmittedJob(ref=ref, folder=job_dir(self.workspace, job.id)), executor,
                      local=not job.cluster and isinstance(executor, LocalExecutor),
                      log_offset=log.stat().st_size if log.exists() else 0, live=LiveLog.from_end(log))

    # --- start-up ---------------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Adopt every active job that still runs; record the end of every other one."""
        for job in Job.select().where(Job.status.in_(ACTIVE)):
            self._claim(job)

    def _claim(self, job: Job) -> None:
        """Take charge of an active job this supervisor does not follow yet."""
        try:
            executor = self._executor(job)
        except (ConfigError, UnknownPluginError) as exc:
            self._fail(job, f"its executor cannot be used: {exc}")
            return
        ref = job.executor_ref or (f"{job.pid} {job.process_start or ''}".strip() if job.pid is not None else None)
        if ref is None:
            ref = executor.recover(job_dir(self.workspace, job.id))
            if ref is None:
                if job.status == STOPPING:
                    finish_unlaunched(job.id, time.time())
                return  # admitted, never launched: launched on the next pass
            self._record_ref(job, ref, executor)
        handle = self._handle(job, ref, executor)
        state = self._poll(handle)
        if state is not None and state.ended:
            self._finish(handle, state)
            return
        logger.info("adopted job %s (%s)", job.id, ref)
        record_event(job.id, "job_adopted", time.time(), **self._where(handle))
        self.handles[job.id] = handle

    def _record_ref(self, job: Job, ref: str, executor: Executor) -> None:
        if isinstance(executor, LocalExecutor):
            pid, _, ticks = ref.partition(" ")
            Job.update(pid=int(pid), process_start=ticks or None, executor_ref=ref).where(Job.id == job.id).execute()
        else:
            Job.update(executor_ref=ref).where(Job.id == job.id).execute()

    @staticmethod
    def _where(handle: Handle) -> dict[str, Any]:
        """Event fields saying where a job runs."""
        if handle.local:
            return {"pid": handle.pid}
        return {"executor_ref": handle.submitted.ref}

    # --- launching --------------------------------------------------------------------------------------------
    def submission(self, job: Job) -> Submission:
        """What the job's executor is given (the run folder is made by then)."""
        assert job.run_dir is not None
        resources = Resources(**job.resources) if job.resources else Resources()
        return Submission(
            job_id=job.id, name=f"simpletuner-{job.id}-{job.environment}",
            arguments=train_arguments(job, self.workspace), resources=resources,
            environment=job_environment(job, self.workspace, base={}, registry=self.registry),
            working_dir=self.workspace.root, run_dir=Path(job.run_dir), folder=job_dir(self.workspace, job.id),
            launch_arguments=tuple(job.launcher_args) if job.launcher_args is not None else None)

    def launch(self, job: Job) -> None:
        """Make an admitted job's run folder (recorded before the job starts, so its files can be found whatever
        happens next), then hand the job to its executor: a wrapper process in a new session for ``local`` (its
        output going to the job's log), a submission to a cluster for the others."""
        folder = job_dir(self.workspace, job.id)
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        try:
            executor = self._executor(job)
            if job.run_dir is None:
                job.run_dir = str(self._new_folder(job, now))
                Job.update(run_dir=job.run_dir).where(Job.id == job.id).execute()
            path = events_path(job)
            offset = path.stat().st_size if path.exists() else 0
            live = LiveLog.from_end(folder / LOG_FILE)  # before the job can print anything
            problems = executor.problems(self.workspace.root, Path(job.output_dir))
            if problems:
                raise SubmitError("; ".join(problems))
            ref = executor.submit(self.submission(job))
        except (OSError, SubmitError, ExecutorUnavailable, ConfigError, UnknownPluginError) as exc:
            self._fail(job, f"could not start the job: {exc}", now)
            return
        except Exception as exc:  # an executor plugin's own bug must not stop the supervisor
            logger.exception("the executor of job %s failed to submit it", job.id)
            self._fail(job, f"could not start the job: {type(exc).__name__}: {exc}", now)
            return
        handle = self._handle(job, ref, executor)
        handle.live = live
        self.handles[job.id] = handle
        # started_at stays the admission time, so jobs admitted one after the other keep that order even when
        # their processes happen to launch the other way round.
        self._record_ref(job, ref, executor)
        Job.update(phase="starting", events_offset=offset).where(Job.id == job.id).execute()
        record_event(job.id, "job_started", now, **self._where(handle), environment=job.environment,
                     run_dir=job.run_dir, executor=job.executor or LOCAL)
        record_event(job.id, "phase", now, phase="starting")
        logger.info("started job %s (%s) on %s as %s", job.id, job.environment, job.executor or LOCAL, ref)

    def _new_folder(self, job: Job, now: float) -> Path:
        """The folder the job writes into: a new run folder for training; for a try job, a new folder under the
        trained run's ``tries/``, with the request beside the job's log."""
        if job.kind != TRY:
            return create_run_folder(Path(job.output_dir), job.environment, job_id=job.id, now=now)
        folder = new_try_folder(Path(job.task["run_dir"]))
        request = job_dir(self.workspace, job.id) / TRY_REQUEST_FILE
        request.write_text(json.dumps(job.task["request"]))
        return folder

    def _fail(self, job: Job, error: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        Job.update(status=FAILED, phase="failed", ended_at=now, error=error).where(Job.id == job.id).execute()
        record_event(job.id, "job_finished", now, status=FAILED, error=error)
        self.handles.pop(job.id, None)

    # --- watching ---------------------------------------------------------------------------------------------
    def _poll(self, handle: Handle) -> JobState | None:
        """The job's state from its executor (None while the executor cannot be reached); records changes of a
        cluster job's state and of the cluster's reachability as events, and copies its new log output."""
        now = time.time()
        try:
            state = handle.executor.poll(handle.submitted)
            if not handle.local:
                self._copy_log(handle)
        except Exception as exc:  # ExecutorUnavailable, or an executor plugin's own bug: ask again later
            message = str(exc) if isinstance(exc, ExecutorUnavailable) else f"{type(exc).__name__}: {exc}"
            if handle.unreachable != message:
                logger.warning("job %s: its executor cannot be reached: %s", handle.job_id, message)
                record_event(handle.job_id, "executor_unreachable", now, error=message)
            handle.unreachable = message
            handle.next_poll = now + max(self.cluster_poll_s, UNREACHABLE_RETRY_S)
            return None
        if handle.unreachable is not None:
            record_event(handle.job_id, "executor_reachable", now)
            handle.unreachable = None
        if not handle.local and not state.ended and state.state != handle.state:
            record_event(handle.job_id, "executor_state", now, state=state.state, reason=state.reason)
            handle.state = state.state
        handle.next_poll = now if handle.local else now + self.cluster_poll_s
        return state

    def _copy_log(self, handle: Handle) -> None:
        """Append what a cluster job printed since the last copy to the job's log (for executors that hand it
        over instead of writing the log file)."""
        data = handle.executor.read_log(handle.submitted, handle.log_offset)
        if data:
            with (handle.submitted.folder / LOG_FILE).open("ab") as log:
                log.write(data)
            handle.log_offset += len(data)

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

    def _finish(self, handle: Handle, state: JobState) -> None:
        """Record the end of a job: status, exit code, signal, explanation and the last lines of its log."""
        self.ingest(handle.job_id)
        job = Job.get_by_id(handle.job_id)
        code, sig = state.exit_code, state.signal
        stop_requested = job.stop_requested_at is not None
        if state.state == SUCCEEDED:
            status, error = COMPLETED, None
        elif stop_requested:
            status = STOPPED
            error = f"stopped by {job.stop_requested_by or 'the server'}" + (
                f" (killed after the {self.grace_s:g} s grace period)" if handle.killed else "")
        else:
            status = STOPPED if state.state == EXECUTOR_STOPPED else FAILED
            error = state.reason or describe_exit(code, sig, False) or f"the job ended {state.state}"
            failure = self._run_failure(job.id)
            if failure and sig is None:
                error = f"{failure} ({error})"
        now = time.time()
        if handle.live is not None:
            handle.live.publish(job.id, now, final=True)
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
    def _stop(self, handle: Handle, force: bool) -> bool:
        """Ask the job's executor to stop it; False when the executor cannot be reached (asked again later)."""
        try:
            handle.executor.stop(handle.submitted, force=force)
        except Exception as exc:  # ExecutorUnavailable, or an executor plugin's own bug
            logger.warning("job %s: could not ask its executor to stop it: %s", handle.job_id, exc)
            return False
        return True

    def apply_requests(self) -> None:
        """Stop jobs asked to stop, admit waiting jobs whose GPUs are free, launch admitted ones."""
        now = time.time()
        for job in Job.select().where(Job.status.in_(ACTIVE)):
            handle = self.handles.get(job.id)
            if handle is None:
                self._claim(job)
                handle = self.handles.get(job.id)
            if job.status != STOPPING or handle is None:
                continue
            if job.term_sent_at is None:
                if self._stop(handle, force=False):
                    Job.update(term_sent_at=now).where(Job.id == job.id).execute()
                    logger.info("sent SIGTERM to job %s" if handle.local else "asked the executor to stop job %s",
                                job.id)
            elif now - job.term_sent_at >= self.grace_s and not handle.killed:
                if self._stop(handle, force=True):
                    handle.killed = True
                    logger.warning("job %s outlived the %g s grace period: %s", job.id, self.grace_s,
                                   "sent SIGKILL" if handle.local else "forced its end")
        admit_ready(self.database, now)
        for job in Job.select().where((Job.status == RUNNING) & Job.pid.is_null() & Job.executor_ref.is_null()):
            if job.id not in self.handles:
                self.launch(job)

    # --- the loop ---------------------------------------------------------------------------------------------
    def step(self) -> None:
        """One fast pass: events of every followed job, and the end of those that ended."""
        now = time.time()
        for handle in list(self.handles.values()):
            if now >= handle.next_poll:
                state = self._poll(handle)
                if state is not None and state.ended:
                    self._finish(handle, state)
                    continue
            self.ingest(handle.job_id)
            if handle.live is not None:
                handle.live.publish(handle.job_id, now)

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
