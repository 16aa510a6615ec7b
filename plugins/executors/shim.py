"""The wrapper every job runs in: ``python -m simpletuner.plugins.executors.shim STATUS_FILE -- COMMAND...``.

It leads the job's process group, runs the training command as its child, and writes how that child ended
(exit code or signal) to ``STATUS_FILE`` before it exits. The status therefore survives a restart of the server:
a supervisor that adopts a running job after a restart is not the job's parent and could not learn the exit status
otherwise. The wrapper is a child subreaper, so processes the command leaves behind become its children; it stops
them before it writes the status, so a job never leaves orphans.

It ignores SIGTERM and SIGINT itself (the supervisor signals the whole tree, and the wrapper must outlive the
command to record its end); SIGKILL after the grace period ends it with the rest.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from simpletuner.core.atomic import atomic_write_text
from simpletuner.plugins.executors.processes import descendants, start_ticks

PR_SET_CHILD_SUBREAPER = 36
#: Seconds left to processes the command left behind between SIGTERM and SIGKILL.
LEFTOVER_GRACE_S = 5.0


def _become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: leftovers are then reparented to init instead
        pass


def _reap_leftovers() -> None:
    """Stop what the command left behind: SIGTERM, a short grace, SIGKILL; reap everything."""
    for sig, wait in ((signal.SIGTERM, LEFTOVER_GRACE_S), (signal.SIGKILL, LEFTOVER_GRACE_S)):
        left = descendants(os.getpid())
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.05)


#: Written beside the status file at start: ``PID START_TICKS`` of the wrapper, so a supervisor that crashed
#: between launching a job and recording its pid can still find it.
PID_FILE_SUFFIX = ".pid"


def run(status_file: Path, command: list[str]) -> int:
    """Run ``command``, record its end in ``status_file``; returns 0 (the status file holds the outcome)."""
    _become_subreaper()
    atomic_write_text(status_file.with_suffix(PID_FILE_SUFFIX), f"{os.getpid()} {start_ticks(os.getpid())}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # a Python handler (not SIG_IGN), so the command gets the default
    child = subprocess.Popen(command)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            status = 0
            break
        if pid == child.pid:
            break
    _reap_leftovers()
    returncode = os.waitstatus_to_exitcode(status)
    outcome = {"returncode": returncode if returncode >= 0 else None,
               "signal": -returncode if returncode < 0 else None, "ended_at": time.time()}
    atomic_write_text(status_file, json.dumps(outcome))
    return 0


def main(argv: list[str]) -> int:
    """Entry point: ``STATUS_FILE -- COMMAND...``."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m simpletuner.plugins.executors.shim STATUS_FILE -- COMMAND...", file=sys.stderr)
        return 2
    return run(Path(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
