"""Process facts read from ``/proc`` and signals to a job's whole process tree.

A job's processes are not always in one process group: ``accelerate launch`` starts its workers through torch's
elastic agent, which gives each worker a session of its own. Stopping a job therefore signals its process group
*and* every descendant found by walking ``/proc``, so that nothing is left behind.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")

#: Why a job died of SIGKILL when nobody asked it to stop.
OOM_EXPLANATION = (
    "the training process was killed with SIGKILL, most likely by the out-of-memory killer (the machine ran out "
    "of RAM): check `dmesg` or `journalctl -k`, then lower train_batch_size or resolution, apply a lighter memory "
    "preset (`simpletuner presets`), or quantise the base model"
)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces), or None if gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2:].split()


def start_ticks(pid: int) -> str | None:
    """When the process started (clock ticks since boot): with the pid, it identifies a process across pid reuse."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def is_running(pid: int, ticks: str | None = None) -> bool:
    """Whether ``pid`` is a live (not zombie) process, and the same process when ``ticks`` is given."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return ticks is None or fields[19] == ticks


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from every thread's children list)."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before children."""
    order: list[int] = []
    pending = children(pid)
    while pending:
        current = pending.pop(0)
        if current in order:
            continue
        order.append(current)
        pending += children(current)
    return order


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] not in ("Z", "X") and fields[2] == str(pgid):
                members.append(int(entry.name))
    return members


def signal_tree(pid: int, sig: int) -> list[int]:
    """Send ``sig`` to the process group led by ``pid``, to ``pid`` and to every descendant (and its group).

    Returns the processes signalled. Processes that are already gone are skipped silently.
    """
    targets = [pid, *descendants(pid)]
    groups = set()
    for target in targets:
        try:
            groups.add(os.getpgid(target))
        except ProcessLookupError:
            continue
    own_group = os.getpgrp()
    for group in groups - {own_group}:  # never signal the caller's own group
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for target in targets:
        try:
            os.kill(target, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return targets


def describe_exit(returncode: int | None, sig: int | None, stop_requested: bool) -> str | None:
    """A one-line explanation of a job's end (None for a clean exit)."""
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if stop_requested:
            return f"stopped on request ({name})"
        if sig == signal.SIGKILL:
            return OOM_EXPLANATION
        return f"the training process was killed by {name}"
    if returncode:
        return f"the training process exited with code {returncode}"
    return None
