"""The ``local`` tracker: metrics as JSON lines in the run's output folder, read by the web UI's charts.

This module is the entry point; it imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

import attrs

from simpletuner.core.hookspecs import hookimpl
from simpletuner.core.options import PATH, option
from simpletuner.core.specs import TrackerSpec


@attrs.define(kw_only=True)
class LocalTrackerOptions:
    """Options of the ``local`` tracker."""

    local_metrics_file: str = option(
        "metrics.jsonl", help="File of the local tracker, relative to output_dir (or absolute): one JSON object "
        "per line with the step, the time and the values.", section="validation", trust=PATH,
    )

    @local_metrics_file.validator
    def _check_file(self, attribute: Any, value: str) -> None:
        if not value.strip() or value.endswith(("/", "\\")):
            raise ValueError(f"$.{attribute.name}: give a file name such as 'metrics.jsonl', got {value!r}")


def _make(options: LocalTrackerOptions | None) -> Any:
    from simpletuner.trackers.local.tracker import JsonlTracker

    return JsonlTracker(options or LocalTrackerOptions())


@hookimpl
def register_trackers(register):  # type: ignore[no-untyped-def]
    """Register the ``local`` JSON-lines tracker."""
    register(TrackerSpec(
        name="local", title="Local metrics file",
        description="Scalars and image paths as JSON lines in the output folder; the web UI charts read it.",
        options=LocalTrackerOptions, factory=_make, sends_data=False,
    ))
