"""The run's event file: step events reach the file within the flush interval, everything else at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from simpletuner.core.events import EVENTS_FILE, EventWriter, read_events


def _names(path: Path) -> list[str]:
    return [e["event"] for e in read_events(path)] if path.exists() else []


def test_step_events_wait_for_the_interval_and_other_events_flush_everything(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    writer = EventWriter(path, flush_interval=3600)  # no background flush within this test
    try:
        writer.emit("step", step=1)  # the first write after a long quiet flushes at once
        writer.emit("step", step=2)
        writer.emit("step", step=3)
        assert [e["step"] for e in read_events(path)] == [1]
        writer.emit("checkpoint_saved", step=3, path="x", pruned=[])
        assert _names(path) == ["step", "step", "step", "checkpoint_saved"]
        writer.emit("step", step=4)
        assert len(read_events(path)) == 4
    finally:
        writer.close()
    assert [e["seq"] for e in read_events(path)] == [0, 1, 2, 3, 4]
    assert not any(t.name == "simpletuner-events" and t.is_alive() for t in threading.enumerate())


def test_a_deferred_step_event_reaches_the_file_without_further_events(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    with EventWriter(path, flush_interval=0.02) as writer:
        writer.emit("step", step=1)
        writer.emit("step", step=2)  # within the interval: deferred to the background flush
        deadline = time.monotonic() + 10
        while len(read_events(path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e["step"] for e in read_events(path)] == [1, 2]


def test_listeners_get_every_event_at_once_and_a_negative_interval_is_refused(tmp_path: Path) -> None:
    seen: list[str] = []
    with EventWriter(tmp_path / EVENTS_FILE, [lambda r: seen.append(r["event"])], flush_interval=3600) as writer:
        writer.emit("step", step=1)
        writer.emit("step", step=2)
        assert seen == ["step", "step"]
    with pytest.raises(ValueError, match="flush_interval"):
        EventWriter(None, flush_interval=-1)
