"""Helpers of the training-engine tests (a uniquely named module: test folders share one import namespace)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def events_of(output_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The run's events (of one type)."""
    from simpletuner.core.events import EVENTS_FILE, read_events

    events = read_events(output_dir / EVENTS_FILE)
    return [e for e in events if kind is None or e["event"] == kind]


def only_run(output_dir: Path) -> Path:
    """The one run folder under an output folder (of a test that ran one environment once)."""
    from simpletuner.core.training.run_folders import run_folders

    [run] = run_folders(output_dir)
    return run.path
