"""The live log: a running job's new console lines become ``log`` events (complete lines only, progress bars reduced
to their last state, a flood skipped to its end, the last partial line sent when the job ends), and a running job
keeps only its newest ``log`` events."""

from __future__ import annotations

from pathlib import Path

import pytest

from simpletuner.ui.jobs import live_log
from simpletuner.ui.jobs.live_log import LiveLog, read_lines
from simpletuner.ui.jobs.models import Job, JobEvent

from .conftest import UiServer

pytestmark = pytest.mark.timeout(60)


def test_only_complete_lines_are_read_and_progress_bars_keep_their_last_state(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"loading\ncaching  10%\rcaching 100%\nstep 1 of")
    lines, offset, skipped = read_lines(log, 0)
    assert lines == ["loading", "caching 100%"] and skipped == 0
    assert offset == log.read_bytes().index(b"step")  # the unfinished line waits for its end
    with log.open("ab") as handle:
        handle.write(b" 5\n\n")
    assert read_lines(log, offset) == (["step 1 of 5"], log.stat().st_size, 0)
    assert read_lines(log, log.stat().st_size) == ([], log.stat().st_size, 0)
    with log.open("ab") as handle:
        handle.write("Trained 5 steps ✓".encode())
    assert read_lines(log, log.stat().st_size - 19, final=True)[0] == ["Trained 5 steps ✓"]
    assert read_lines(tmp_path / "missing.log", 0) == ([], 0, 0)


def test_a_flood_is_skipped_to_whole_lines_and_a_replaced_file_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    flood = b"".join(b"line %06d\n" % i for i in range(20_000))  # 220 kB, over one look's bytes
    log.write_bytes(flood)
    lines, offset, skipped = read_lines(log, 0)
    assert offset == len(flood) and skipped == len(flood) - len(lines) * 12
    assert skipped > 0 and lines[-1] == "line 019999" and lines[0].startswith("line ")  # never half a line
    log.write_bytes(b"fresh\n")  # shorter than what was read: a new file
    assert read_lines(log, offset) == (["fresh"], 6, 0)
    log.write_bytes(b"x" * (live_log.MAX_BYTES + 10))  # one endless line is shown in pieces, not never
    assert read_lines(log, 0)[1] == log.stat().st_size


def test_a_running_job_keeps_its_newest_log_events(ui: UiServer, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_log, "KEEP", 3)
    job = Job.create(environment="env", status="running", output_dir=str(tmp_path), created_at=1.0)
    log = tmp_path / "output.log"
    log.write_bytes(b"")
    follower = LiveLog.from_end(log)
    for number in range(7):
        with log.open("ab") as handle:
            handle.write(b"line %d\n" % number)
        follower.publish(job.id, now=float(number))
    follower.publish(job.id, now=6.1)  # too early since the last look, and nothing new anyway
    shown = [row.data["lines"] for row in JobEvent.select().where((JobEvent.job == job.id) & (JobEvent.event == "log"))
             .order_by(JobEvent.id)]
    # pruned after every KEEP events to the newest KEEP: after the 6th, lines 3-5 were left; the 7th came after
    assert shown == [["line 3"], ["line 4"], ["line 5"], ["line 6"]]
    with log.open("ab") as handle:
        handle.write(b"no newline at the end")
    follower.publish(job.id, now=6.2, final=True)
    last = JobEvent.select().where(JobEvent.job == job.id).order_by(JobEvent.id.desc()).first()
    assert last.data["lines"] == ["no newline at the end"] and last.data["offset"] == log.stat().st_size
