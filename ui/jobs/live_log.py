"""A running job's console output as ``log`` events, so the web UI shows it live over the event stream.

The supervisor reads what the job's log file gained since its last look (at most every :data:`EVERY_S` seconds)
and records the complete lines as one ``log`` event: ``lines`` (progress bars' carriage-return rewrites reduced to
their last state), ``offset`` (the byte offset after them, so a client that loaded the tail over HTTP skips what it
already shows) and ``skipped`` bytes when a job printed more than :data:`MAX_BYTES` between two looks. The log
file stays the record: a running job keeps only its last :data:`KEEP` ``log`` events in the database and retention
drops them once the job has ended.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from simpletuner.ui.jobs.models import JobEvent
from simpletuner.ui.jobs.queue import record_event

#: Seconds between two looks at one job's log.
EVERY_S = 0.5
#: Bytes read per look; a job that printed more since the last one has the start of that output skipped.
MAX_BYTES = 64 * 1024
#: ``log`` events kept per running job (older ones are deleted; the log file has everything).
KEEP = 200
#: Characters kept of one line (a line of megabytes would otherwise be one event).
MAX_LINE = 2000


@attrs.define
class LiveLog:
    """Where the live view of one job's log stands."""

    path: Path
    offset: int
    next_look: float = 0.0
    recorded: int = 0

    @classmethod
    def from_end(cls, path: Path) -> LiveLog:
        """Follow ``path`` from its current end (a job adopted after a restart does not replay old output)."""
        return cls(path, path.stat().st_size if path.exists() else 0)

    def publish(self, job_id: int, now: float, final: bool = False) -> None:
        """Record the new complete lines as a ``log`` event (with ``final``, the unfinished last line as well);
        nothing when there are none or it is too early since the last look."""
        if not final and now < self.next_look:
            return
        self.next_look = now + EVERY_S
        lines, offset, skipped = read_lines(self.path, self.offset, final)
        if lines or skipped:
            record_event(job_id, "log", now, lines=lines, offset=offset, skipped=skipped)
        self.offset = offset  # only once recorded: a database error leaves the lines for the next look
        if not lines and not skipped:
            return
        self.recorded += 1
        if self.recorded % KEEP == 0:
            prune(job_id)


def read_lines(path: Path, offset: int, final: bool = False) -> tuple[list[str], int, int]:
    """The complete lines of ``path`` after byte ``offset`` (all of them with ``final``), the offset after them and
    how many bytes were skipped to stay within :data:`MAX_BYTES`."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if size < offset:  # the file was replaced: start over
                offset = 0
            skipped = max(0, size - offset - MAX_BYTES)
            handle.seek(offset + skipped)
            data = handle.read(MAX_BYTES)
    except FileNotFoundError:
        return [], offset, 0
    end = len(data) if final else data.rfind(b"\n") + 1
    if end == 0 and len(data) == MAX_BYTES:  # one line longer than a look: shown in pieces rather than never
        end = len(data)
    if skipped:  # the first line was cut by the skip: start at the next whole one
        start = data.find(b"\n") + 1
        skipped, data, end = skipped + start, data[start:], max(end - start, 0)
    text = data[:end].decode("utf-8", errors="replace")
    lines = [last_state(line)[:MAX_LINE] for line in text.split("\n")]
    return [line for line in lines if line.strip()], offset + skipped + end, skipped


def last_state(line: str) -> str:
    """What a terminal shows of a line that progress bars rewrote with carriage returns: the text after the last
    one (a Windows line end does not count)."""
    return line.rstrip("\r").rsplit("\r", 1)[-1]


def prune(job_id: int) -> int:
    """Delete all but the newest :data:`KEEP` ``log`` events of a job; returns how many went."""
    newest = (JobEvent.select(JobEvent.id).where((JobEvent.job == job_id) & (JobEvent.event == "log"))
              .order_by(JobEvent.id.desc()).offset(KEEP - 1).limit(1).first())
    if newest is None:
        return 0
    return JobEvent.delete().where((JobEvent.job == job_id) & (JobEvent.event == "log")
                                   & (JobEvent.id < newest.id)).execute()
