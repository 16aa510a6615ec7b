"""Wiring the job runner into ``simpletuner server``: the supervisor process and gunicorn's hooks.

The supervisor is started by the server process before gunicorn forks any worker (so there is one per server),
started again by the server's master when it dies (:class:`SupervisorKeeper`), and stopped from gunicorn's
``on_exit`` hook. It also watches its parent and exits when the server is gone. Workers
get a ``post_worker_init`` hook that ends server-sent event streams as soon as the worker is asked to shut down,
instead of holding the shutdown for the whole graceful timeout.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from simpletuner.core.errors import SimpleTunerError
from simpletuner.core.workspace import Workspace

#: Set in a worker when it is asked to shut down; event streams end when they see it.
WORKER_STOPPING = threading.Event()

DEFAULT_STOP_GRACE_S = 30.0
READY_TIMEOUT_S = 60.0


def start_supervisor(workspace: Workspace, database_url: str | None,
                     grace_s: float = DEFAULT_STOP_GRACE_S) -> subprocess.Popen[str]:
    """Start the supervisor and wait until it has reconciled the jobs (it prints ``ready``).

    Raises :class:`SimpleTunerError` with the supervisor's message when it cannot start (for example because
    another server already runs the jobs of this workspace).
    """
    env = dict(os.environ)
    if database_url:
        env["SIMPLETUNER_DATABASE_URL"] = database_url
    else:
        env.pop("SIMPLETUNER_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "simpletuner.ui.jobs.supervisor", "--workspace", str(workspace.root), "--grace",
         str(grace_s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=env)
    assert process.stdout is not None and process.stderr is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    line = ""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout, process.stderr], [], [], 0.5)
        if process.stderr in readable:
            message = process.stderr.readline()
            if message:
                sys.stderr.write(message)
        if process.stdout in readable:
            line = process.stdout.readline().strip()
            break
        if process.poll() is not None:
            break
    if line != "ready":
        rest = process.stderr.read() if process.poll() is not None else ""
        stop_supervisor(process)
        message = (rest.strip().splitlines() or ["it did not report ready"])[-1]
        raise SimpleTunerError(f"the job supervisor could not start: {message}")
    _forward_stderr(process)
    process.stdout.close()
    return process


def _forward_stderr(process: subprocess.Popen[str]) -> None:
    """Copy the supervisor's log lines to the server's stderr (a daemon thread; ends with the pipe)."""
    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            sys.stderr.write(line)

    threading.Thread(target=pump, name="supervisor-log", daemon=True).start()


def stop_supervisor(process: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """Ask the supervisor to exit (running jobs go on, to be adopted by the next server) and wait for it."""
    try:
        process.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # gunicorn's master reaps any child, so the exit may already be collected: poll the pid instead
            os.kill(process.pid, 0)
        except ProcessLookupError:
            return
        if process.poll() is not None:
            return
        time.sleep(0.05)
    process.kill()


def _alive(process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        return False
    try:  # gunicorn's master may have reaped it already: ask about the pid itself
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


class SupervisorKeeper:
    """Keeps one supervisor running for the life of the server: one that dies (killed, out of memory) is started
    again within ``check_s`` seconds and adopts the jobs still running, as after a server restart."""

    def __init__(self, workspace: Workspace, database_url: str | None, grace_s: float = DEFAULT_STOP_GRACE_S,
                 check_s: float = 1.0) -> None:
        self.workspace, self.database_url, self.grace_s, self.check_s = workspace, database_url, grace_s, check_s
        self.process = start_supervisor(workspace, database_url, grace_s)
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def watch(self) -> None:
        """Start watching the supervisor (a daemon thread of the server's master process)."""
        threading.Thread(target=self._watch, name="supervisor-keeper", daemon=True).start()

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_s):
            with self._lock:
                if self._stopping.is_set() or _alive(self.process):
                    continue
                sys.stderr.write(f"the job supervisor (pid {self.process.pid}) ended; starting it again\n")
                try:
                    self.process = start_supervisor(self.workspace, self.database_url, self.grace_s)
                except SimpleTunerError as exc:  # e.g. the old one still holds the lock: try again next round
                    sys.stderr.write(f"{exc}\n")

    def stop(self) -> None:
        """Stop watching, then stop the supervisor (running jobs go on, to be adopted by the next server)."""
        self._stopping.set()
        with self._lock:
            stop_supervisor(self.process)


def gunicorn_hooks(keeper: SupervisorKeeper, environment: str | None = None, database_url: str | None = None,
                   workspace: Workspace | None = None) -> dict[str, Any]:
    """gunicorn settings: keep the supervisor running and queue ``environment`` once the server listens; stop the
    supervisor when the master exits; end event streams when a worker stops."""
    def when_ready(server: Any) -> None:
        keeper.watch()
        if environment and workspace is not None:
            job_id = queue_environment(workspace, database_url, environment)
            print(f"Queued training of {environment!r} as job {job_id}", flush=True)

    def on_exit(server: Any) -> None:
        keeper.stop()

    def post_worker_init(worker: Any) -> None:
        previous = signal.getsignal(signal.SIGTERM)

        def handle_term(signum: int, frame: Any) -> None:
            WORKER_STOPPING.set()
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, handle_term)

    return {"when_ready": when_ready, "on_exit": on_exit, "post_worker_init": post_worker_init}


def check_environment(workspace: Workspace, environment: str) -> None:
    """Refuse to start a server whose ``--env`` names a missing or invalid environment (every problem listed)."""
    from simpletuner.core.errors import ConfigError
    from simpletuner.core.plugins import Registry
    from simpletuner.ui.jobs.launch import job_request

    try:
        job_request(workspace, Registry(), environment, None, None)
    except ConfigError as exc:
        problems = "\n".join(f"  - {p}" for p in exc.problems)
        raise SimpleTunerError(f"--env {environment}: {len(exc.problems)} problem(s):\n{problems}") from None


def queue_environment(workspace: Workspace, database_url: str | None, environment: str) -> int:
    """Queue a training job of ``environment`` owned by the server itself (``simpletuner server --env``)."""
    from simpletuner.core.plugins import Registry
    from simpletuner.ui.db.connection import open_database
    from simpletuner.ui.db.models import bind_models
    from simpletuner.ui.jobs.launch import job_request
    from simpletuner.ui.jobs.models import bind_job_models
    from simpletuner.ui.jobs.queue import submit

    database = open_database(database_url, workspace.root)
    bind_models(database)
    bind_job_models(database)
    try:
        database.connect()
        job = submit(database, job_request(workspace, Registry(), environment, None, None))
    finally:
        database.close()
    return job.id
